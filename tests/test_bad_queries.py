"""
Bad queries fail early with a clear message, before any export reaches JSOC.

Every case goes through Fido against the offline JSOC; the message names the parameter and
what would work, and the server shows no ``exp_request`` call.
"""

import re

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401 - registers a.jsoc_cutout

START, END = "2014-02-05T08:00:00", "2014-02-05T08:02:00"


def hpc(tx, ty, obstime=START):
    return SkyCoord(
        tx * u.arcsec, ty * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=obstime)
    )


def stony(lon, lat):
    return SkyCoord(lon * u.deg, lat * u.deg, frame=frames.HeliographicStonyhurst(obstime=START))


def carrington(lon, lat):
    return SkyCoord(
        lon * u.deg, lat * u.deg, frame=frames.HeliographicCarrington(obstime=START, observer="earth")
    )


def box(center=None, width=100 * u.pix, height=100 * u.pix):
    return a.jsoc_cutout.Cutout(center=hpc(0, 0) if center is None else center, width=width, height=height)


def query(**overrides):
    """A good query (one 171 channel, two minutes) with some attrs replaced or removed (None)."""
    attrs = {
        "time": lambda: a.Time(START, END),
        "series": lambda: a.jsoc.Series("aia.lev1_euv_12s"),
        "wavelength": lambda: a.jsoc_cutout.Wavelength(171 * u.AA),
        "cutout": lambda: box(),  # noqa: PLW0108 - every attr is built inside pytest.raises
    }
    attrs.update(overrides)
    return [make() for make in attrs.values() if make is not None]


BAD_SEARCHES = {
    "unknown series": (
        {"series": lambda: a.jsoc.Series("aia.lev9_nonsense")},
        r"a\.jsoc\.Series: JSOC does not know the series 'aia\.lev9_nonsense'.*such as aia\.lev1_euv_12s",
    ),
    "CEA series": (
        {"series": lambda: a.jsoc.Series("hmi.sharp_cea_720s"), "wavelength": None},
        r"a\.jsoc\.Series: hmi\.sharp_cea_720s holds CEA .*use a full-disk series such as hmi\.M_720s",
    ),
    "wavelength not in series": (
        {"wavelength": lambda: a.jsoc_cutout.Wavelength(1600 * u.AA)},
        r"a\.jsoc_cutout\.Wavelength: 1600 Angstrom is not a channel of aia\.lev1_euv_12s; its channels",
    ),
    "wavelength range with no channel": (
        {"wavelength": lambda: a.Wavelength(400 * u.AA, 500 * u.AA)},
        r"a\.Wavelength: no channel of aia\.lev1_euv_12s lies in 400-500 Angstrom; its channels are",
    ),
    "UV channel on the EUV series via a.Wavelength": (
        {"wavelength": lambda: a.Wavelength(1700 * u.AA)},
        r"a\.Wavelength: no channel of aia\.lev1_euv_12s lies in 1700-1700 Angstrom",
    ),
    "EUV channel on the UV series": (
        {"series": lambda: a.jsoc.Series("aia.lev1_uv_24s")},
        r"171 Angstrom is not a channel of aia\.lev1_uv_24s; its channels are 1600, 1700",
    ),
    "wavelength on aia.lev1 that AIA does not have": (
        {
            "series": lambda: a.jsoc.Series("aia.lev1"),
            "wavelength": lambda: a.jsoc_cutout.Wavelength(6173 * u.AA),
        },
        r"6173 Angstrom is not a channel of aia\.lev1; its channels are 94, .*4500",
    ),
    "wavelength on an HMI series": (
        {"series": lambda: a.jsoc.Series("hmi.M_45s")},
        r"a\.jsoc_cutout\.Wavelength: hmi\.M_45s is not indexed by wavelength; use a series such as",
    ),
    "width zero": (
        {"cutout": lambda: box(width=0 * u.pix)},
        r"Cutout: width must be positive, got 0\.0 pix; give the full size",
    ),
    "height negative": (
        {"cutout": lambda: box(height=-10 * u.arcsec)},
        r"Cutout: height must be positive, got -10\.0 arcsec",
    ),
    "corners with no area": (
        {"cutout": lambda: a.jsoc_cutout.Cutout(bottom_left=hpc(10, 10), top_right=hpc(10, 50))},
        r"a\.jsoc_cutout\.Cutout: the width must be positive, got 0 arcsec",
    ),
    "box wider than the detector in pixels": (
        {"cutout": lambda: box(width=5000 * u.pix)},
        r"the width of 5000 pixels is larger than the 4096-pixel detector of AIA; use at most 4096 pixels",
    ),
    "box taller than the detector in arcsec": (
        {"cutout": lambda: box(width=60 * u.arcsec, height=45 * u.arcmin)},
        r"the height of 4500 pixels is larger than the 4096-pixel detector of AIA.*2457\.6 arcsec",
    ),
    "box wider than the HMI detector in arcsec": (
        {
            "series": lambda: a.jsoc.Series("hmi.M_45s"),
            "wavelength": None,
            "cutout": lambda: box(width=2100 * u.arcsec, height=60 * u.arcsec),
        },
        r"the width of 4167 pixels is larger than the 4096-pixel detector of HMI",
    ),
    "degree box over a hemisphere": (
        {"cutout": lambda: box(stony(0, 0), width=190 * u.deg, height=10 * u.deg)},
        r"the width of 190 heliographic degrees is more than a hemisphere; .* use at most 180 degrees",
    ),
    "width and height in different units": (
        {"cutout": lambda: box(width=100 * u.pix, height=100 * u.arcsec)},
        r"width and height must be in the same kind of unit \(both pixels, both arcseconds",
    ),
    "pixel centre off the detector": (
        {"cutout": lambda: box((5000, 100) * u.pix)},
        r"the pixel centre x=5000 is off the 4096x4096 detector; use 1 to 4096",
    ),
    "Carrington centre with tracking off": (
        {"cutout": lambda: box(carrington(100, 10)), "tracking": lambda: a.jsoc_cutout.Tracking(False)},
        r"a\.jsoc_cutout\.Tracking: Tracking\(False\) cannot be used with a Carrington centre",
    ),
    "tracked helioprojective centre off the disk": (
        {"cutout": lambda: box(hpc(1200, 0))},
        r"is off the solar disk, and Tracking\(True\) needs a point on the Sun to follow",
    ),
    "Stonyhurst centre on the far side": (
        {"cutout": lambda: box(stony(120, 0))},
        r"the heliographic_stonyhurst centre .* is on the far side of the Sun .*longitude within about \+-90",
    ),
    "Carrington centre on the far side": (
        {"cutout": lambda: box(carrington(270, 0))},
        r"the heliographic_carrington centre \(270\.0 deg, 0\.0 deg\) is on the far side of the Sun",
    ),
    "t_ref more than four hours from the data": (
        {"cutout": lambda: box(hpc(0, 0, obstime="2014-02-04T22:00"))},
        r"the centre is given at 2014-02-04T22:00:00\.000 .*within 4 hours of t_ref",
    ),
    "sample finer than the cadence": (
        {"sample": lambda: a.Sample(6 * u.s)},
        r"a\.Sample: 6 s is finer than the 12 s cadence of aia\.lev1_euv_12s; use at least 12 s",
    ),
    "sample finer than an HMI cadence": (
        {
            "series": lambda: a.jsoc.Series("hmi.M_720s"),
            "wavelength": None,
            "sample": lambda: a.Sample(1 * u.min),
        },
        r"a\.Sample: 60 s is finer than the 720 s cadence of hmi\.M_720s; use at least 720 s",
    ),
    "sample that is not whole slots": (
        {"sample": lambda: a.Sample(50 * u.s)},
        r"a\.Sample: 50 s is not a whole number of the 12 s slots of aia\.lev1_euv_12s.*use 48 s or 60 s",
    ),
    "sample on aia.lev1, whose slots are sparse": (
        {
            "series": lambda: a.jsoc.Series("aia.lev1"),
            "wavelength": lambda: a.jsoc_cutout.Wavelength(1600 * u.AA),
            "sample": lambda: a.Sample(24 * u.s),
        },
        r"a\.Sample: JSOC cannot sample aia\.lev1 reliably.*use aia\.lev1_euv_12s, aia\.lev1_uv_24s",
    ),
    "Scale on HMI": (
        {
            "series": lambda: a.jsoc.Series("hmi.M_45s"),
            "wavelength": None,
            "scale": lambda: a.jsoc_cutout.Scale(True),
        },
        r"a\.jsoc_cutout\.Scale: hmi\.M_45s is not an AIA level-1 series; .*use Scale\(False\)",
    ),
    "segment the series does not have": (
        {"segment": lambda: a.jsoc.Segment("magnetogram")},
        r"a\.jsoc\.Segment: magnetogram is not a segment of aia\.lev1_euv_12s; its segments are image",
    ),
    "malformed notify address": (
        {"notify": lambda: a.jsoc.Notify("me@localhost")},
        r"a\.jsoc\.Notify: 'me@localhost' is not an email address; JSOC needs an address registered",
    ),
    "no time range": (
        {"time": None},
        r"A JSOC cutout query needs a time range: add a\.Time\(start, end\)",
    ),
    "no series": (
        {"series": None},
        r"A JSOC cutout query needs a series: add e\.g\. a\.jsoc\.Series\('aia\.lev1_euv_12s'\)",
    ),
    "no box": (
        {"cutout": None, "tracking": lambda: a.jsoc_cutout.Tracking(True)},
        r"A JSOC cutout query needs a box: add a\.jsoc_cutout\.Cutout\(center=",
    ),
    "an attr the client does not understand": (
        {"instrument": lambda: a.Instrument("AIA")},
        r"cannot be used in a JSOC cutout query; the attrs understood are a\.Time, a\.jsoc\.Series",
    ),
    "end time before start time": (
        {"time": lambda: a.Time(END, START)},
        r"End time must be after start time",
    ),
    "centre that is not a coordinate": (
        {"cutout": lambda: a.jsoc_cutout.Cutout(center=(100, 200), width=10 * u.pix, height=10 * u.pix)},
        r"Cutout: center must be a SkyCoord, a pixel pair such as \(2048, 2048\) \* u\.pix or an",
    ),
    "corners of two kinds": (
        {"cutout": lambda: a.jsoc_cutout.Cutout(bottom_left=(10, 10) * u.pix, top_right=hpc(0, 0))},
        r"bottom_left and top_right must both be pixel pairs or both be coordinates",
    ),
    "tracking flag that is not a boolean": (
        {"tracking": lambda: a.jsoc_cutout.Tracking("no")},
        r"Tracking takes True or False, got 'no'",
    ),
    "NOAA number that is not a number": (
        {"cutout": lambda: box(a.jsoc_cutout.ActiveRegion("AR11967"))},
        r"ActiveRegion: the NOAA number must be an integer such as 11967, got 'AR11967'",
    ),
    "NOAA region JSOC does not know": (
        {"cutout": lambda: box(a.jsoc_cutout.ActiveRegion(19999), 300 * u.arcsec, 300 * u.arcsec)},
        r"ActiveRegion: NOAA 19999 is not in JSOC's su_rsb\.NOAA_ActiveRegions series; give",
    ),
    "NOAA region on the far side during the query": (
        {"cutout": lambda: box(a.jsoc_cutout.ActiveRegion(11982), 300 * u.arcsec, 300 * u.arcsec)},
        r"NOAA 11982 \(at Stonyhurst .*\) is on the far side of the Sun at 2014-02-05T08:00; choose",
    ),
}


@pytest.mark.parametrize(("overrides", "message"), BAD_SEARCHES.values(), ids=BAD_SEARCHES.keys())
def test_bad_search_fails_before_any_export(jsoc_env, fido_search, overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fido_search(*query(**overrides))
    assert jsoc_env.calls["exp_request"] == 0


def test_there_are_at_least_thirty_distinct_bad_queries():
    assert len({message for _, message in BAD_SEARCHES.values()}) >= 30


def test_fetch_without_notify_or_jsoc_email_is_refused(jsoc_env, monkeypatch, tmp_path):
    monkeypatch.delenv("JSOC_EMAIL", raising=False)
    res = Fido.search(*query())
    with pytest.raises(
        ValueError, match=r"add a\.jsoc\.Notify\('you@example\.org'\) to the query or set the JSOC_EMAIL"
    ):
        Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert jsoc_env.calls["exp_request"] == 0


def test_fetch_with_an_unregistered_notify_address_is_refused(jsoc_env, tmp_path):
    res = Fido.search(*query(notify=lambda: a.jsoc.Notify("stranger@example.com")))
    with pytest.raises(
        ValueError, match=r"a\.jsoc\.Notify: JSOC does not accept 'stranger@example\.com' .*register it at"
    ):
        Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert jsoc_env.calls["exp_request"] == 0


def test_fetch_with_a_malformed_jsoc_email_is_refused(jsoc_env, monkeypatch, tmp_path):
    monkeypatch.setenv("JSOC_EMAIL", "not an address")
    res = Fido.search(*query())
    with pytest.raises(
        ValueError, match=re.escape("a.jsoc.Notify: 'not an address' is not an email address")
    ):
        Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert jsoc_env.calls["exp_request"] == 0


def test_active_region_search_shows_the_resolved_centre(jsoc_env):
    # The good counterpart of the NOAA cases: 11967's report nearest the meridian (5 degrees
    # west on 2014-02-06 in the offline JSOC's catalogue) becomes a stony centre.
    res = Fido.search(
        *query(cutout=lambda: box(a.jsoc_cutout.ActiveRegion(1967), 300 * u.arcsec, 300 * u.arcsec))
    )
    table = res[0]
    assert table["Cutout"][0].startswith(
        '300x300" at NOAA 11967 at Stonyhurst (5, -12) deg at 2014-02-06T00:00'
    )
    (export,) = table.exports
    assert ",locunits=stony,boxunits=arcsec,t_ref=2014-02-06T00:00:00.000,x=5,y=-12," in export.plan.process(
        "A", "B"
    )
    assert jsoc_env.calls["rs_list"] == 2  # the region, then the records
    assert jsoc_env.calls["exp_request"] == 0
