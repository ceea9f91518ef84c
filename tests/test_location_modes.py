"""
Every location mode end to end: Fido.search and Fido.fetch against the offline JSOC.

The client checks each downloaded cutout against its plan (size, im_patch keywords, the
tracked centre at each frame's time), so a fetch without errors means the offline JSOC cut
what was asked in that mode.
"""

import astropy.units as u
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401 - registers a.jsoc_cutout

START, END = "2014-02-05T08:00:00", "2014-02-05T08:01:00"


def earth_view(tx, ty):
    return SkyCoord(
        tx * u.arcsec, ty * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=START)
    )


def other_observer_view(tx, ty):
    # The same point on the Sun as seen from 50 degrees west of Earth, like STEREO-A.
    observer = frames.HeliographicStonyhurst(50 * u.deg, 0 * u.deg, 0.97 * u.AU, obstime=START)
    return earth_view(tx, ty).transform_to(frames.Helioprojective(observer=observer, obstime=START))


MODES = {
    "helioprojective from Earth": (
        lambda: a.jsoc_cutout.Cutout(center=earth_view(-200, 150), width=120 * u.pix, height=80 * u.pix),
        "arcsec",
        (80, 120),
    ),
    "helioprojective from another observer": (
        lambda: a.jsoc_cutout.Cutout(
            center=other_observer_view(-200, 150), width=72 * u.arcsec, height=48 * u.arcsec
        ),
        "arcsec",
        None,
    ),
    "stonyhurst": (
        lambda: a.jsoc_cutout.Cutout(
            center=SkyCoord(-10 * u.deg, 12 * u.deg, frame=frames.HeliographicStonyhurst(obstime=START)),
            width=100 * u.pix,
            height=100 * u.pix,
        ),
        "stony",
        (100, 100),
    ),
    "carrington": (
        lambda: a.jsoc_cutout.Cutout(
            center=SkyCoord(
                80 * u.deg, -12 * u.deg, frame=frames.HeliographicCarrington(observer="earth", obstime=START)
            ),
            width=100 * u.pix,
            height=100 * u.pix,
        ),
        "carrlong",
        (100, 100),
    ),
    "pixels": (
        lambda: a.jsoc_cutout.Cutout(center=(2048, 1900) * u.pix, width=64 * u.pix, height=96 * u.pix),
        "pixels",
        (96, 64),
    ),
    "corners": (
        lambda: a.jsoc_cutout.Cutout(bottom_left=earth_view(-300, -100), top_right=earth_view(-240, -40)),
        "arcsec",
        None,
    ),
    "NOAA active region": (
        lambda: a.jsoc_cutout.Cutout(
            center=a.jsoc_cutout.ActiveRegion(11967), width=150 * u.pix, height=100 * u.pix
        ),
        "stony",
        (100, 150),
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_each_location_mode_fetches_verified_cutouts(jsoc_env, tmp_path, mode):
    cutout, locunits, shape = MODES[mode]
    res = Fido.search(
        a.Time(START, END),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(171 * u.AA),
        a.Sample(1 * u.min),
        cutout(),
    )
    files = Fido.fetch(res, path=tmp_path / "{file}", progress=False)

    assert not files.errors, files.errors
    assert len(files) == len(res[0]) == 2
    assert f",locunits={locunits}," in jsoc_env.exports[res[0].request_ids[0]].process
    for path in files:
        cutout_map = sunpy.map.Map(path)
        assert cutout_map.meta["hglocunits"].lower().startswith(locunits[:3])
        if shape is not None:
            assert cutout_map.data.shape == shape
