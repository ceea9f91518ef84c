"""The pure planning rules: record sets, process strings and the checks made before any request."""

import re

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401 - registers a.jsoc_cutout
from sunpy_jsoc_cutout import plan
from sunpy_jsoc_cutout.attrs import walker

EUV = plan.SeriesInfo(
    name="aia.lev1_euv_12s",
    primekeys=("T_REC", "WAVELNTH"),
    time_keys=frozenset({"T_REC", "T_OBS"}),
    step=12.0,
    segments=("image", "spikes"),
)
HMI = plan.SeriesInfo(
    name="hmi.M_45s",
    primekeys=("T_REC", "CAMERA"),
    time_keys=frozenset({"T_REC", "T_OBS"}),
    step=45.0,
    segments=("magnetogram",),
)


def hpc(tx, ty, obstime="2014-02-05T08:00:00", observer="earth"):
    return SkyCoord(
        tx * u.arcsec, ty * u.arcsec, frame=frames.Helioprojective(observer=observer, obstime=obstime)
    )


def plan_of(*attrs, series=EUV):
    (params,) = walker.create(a.AttrAnd(list(attrs)) if len(attrs) > 1 else attrs[0])
    return plan.make_plan(params, series)


def walkthrough(**overrides):
    attrs = {
        "time": a.Time("2014-02-05T08:00:00", "2014-02-05T16:00:00"),
        "series": a.jsoc.Series("aia.lev1_euv_12s"),
        "wavelength": a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA, 211 * u.AA, 304 * u.AA),
        "sample": a.Sample(1 * u.min),
        "cutout": a.jsoc_cutout.Cutout(center=hpc(100, -200), width=500 * u.pix, height=500 * u.pix),
    }
    attrs.update(overrides)
    return [value for value in attrs.values() if value is not None]


def test_walkthrough_record_set_holds_all_four_channels_in_one_set():
    export = plan_of(*walkthrough())
    # a.Time is UTC; JSOC's record sets take TAI (35 s ahead in 2014), as sunpy sends them.
    assert export.record_set == (
        "aia.lev1_euv_12s[2014.02.05_08:00:35_TAI-2014.02.05_16:00:35_TAI@60s][171,193,211,304]{image}"
    )


def test_walkthrough_process_string_matches_the_web_form():
    export = plan_of(*walkthrough())
    assert export.process("2014-02-05T08:00:01Z", "2014-02-05T15:59:01Z") == (
        "n=0|im_patch,t_start=2014-02-05T08:00:01Z,t_stop=2014-02-05T15:59:01Z,t=0,r=0,c=0,"
        "cadence=60s,locunits=arcsec,boxunits=pixels,t_ref=2014-02-05T08:00:00.000,"
        "x=100,y=-200,width=500,height=500"
    )


def test_process_string_equals_a_recorded_web_form_request():
    # drms issue #25: the web form's request for a tracked 345.6" box at (-517.2", -246").
    export = plan_of(
        a.Time("2015-10-17T04:33:30", "2015-10-17T09:33:30"),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA, 94 * u.AA, 304 * u.AA),
        a.Sample(84 * u.s),
        a.jsoc_cutout.Cutout(
            center=hpc(-517.2, -246, obstime="2015-10-17T04:33:30"),
            width=345.6 * u.arcsec,
            height=345.6 * u.arcsec,
        ),
    )
    web_form = (
        "n=0|im_patch,t_start=2015-10-17T04:33:30.000,t_stop=2015-10-17T09:33:30.000,t=0,r=0,c=0,"
        "cadence=84s,locunits=arcsec,boxunits=arcsec,t_ref=2015-10-17T04:33:30.000,x=-517.2,y=-246,"
        "width=345.6,height=345.6"
    )
    assert export.process("2015-10-17T04:33:30.000", "2015-10-17T09:33:30.000") == web_form
    assert export.record_set.endswith("@84s][94,171,193,304]{image}")


def test_tracking_flag_is_inverted_for_jsoc():
    tracked = plan_of(*walkthrough(tracking=a.jsoc_cutout.Tracking(True)))
    fixed = plan_of(*walkthrough(tracking=a.jsoc_cutout.Tracking(False)))
    assert ",t=0," in tracked.process("A", "B")
    assert ",t=1," in fixed.process("A", "B")


def test_tracking_is_on_by_default_as_on_jsoc():
    assert ",t=0," in plan_of(*walkthrough()).process("A", "B")


def test_untracked_t_ref_is_the_start_time_as_the_web_form_sends():
    fixed = plan_of(*walkthrough(tracking=a.jsoc_cutout.Tracking(False)))
    assert ",t_ref=2014-02-05T08:00:01Z," in fixed.process("2014-02-05T08:00:01Z", "2014-02-05T15:59:01Z")


def test_register_and_crop_flags():
    export = plan_of(*walkthrough(register=a.jsoc_cutout.Register(True), crop=a.jsoc_cutout.Crop(True)))
    assert ",t=0,r=1,c=1," in export.process("A", "B")


def test_without_sample_the_cadence_is_the_series_step():
    export = plan_of(*walkthrough(sample=None))
    assert "@" not in export.record_set
    assert ",cadence=12s," in export.process("A", "B")


def test_t_ref_defaults_to_the_query_start_for_a_pixel_centre():
    export = plan_of(
        *walkthrough(
            cutout=a.jsoc_cutout.Cutout(center=(2048, 2000) * u.pix, width=300 * u.pix, height=200 * u.pix)
        )
    )
    process = export.process("A", "B")
    assert (
        ",locunits=pixels,boxunits=pixels,t_ref=2014-02-05T08:00:00.000,x=2048,y=2000,width=300,height=200"
        in process
    )


def test_arcsec_box_is_sent_in_arcsec_and_sized_in_pixels():
    export = plan_of(
        *walkthrough(cutout=a.jsoc_cutout.Cutout(center=hpc(0, 0), width=6 * u.arcmin, height=300 * u.arcsec))
    )
    assert ",boxunits=arcsec," in export.process("A", "B")
    assert ",width=360,height=300" in export.process("A", "B")
    assert export.box_pixels == pytest.approx((600, 500))


def test_corner_form_gives_centre_and_size():
    export = plan_of(
        *walkthrough(cutout=a.jsoc_cutout.Cutout(bottom_left=hpc(-100, -50), top_right=hpc(300, 150)))
    )
    impatch = export.impatch
    assert (impatch.locunits, impatch.boxunits) == ("arcsec", "arcsec")
    assert (impatch.x, impatch.y) == pytest.approx((100, 50), abs=1e-6)
    assert (impatch.width, impatch.height) == pytest.approx((400, 200), abs=1e-6)


def test_centre_seen_from_another_observer_is_moved_to_sdo_view():
    # The same point on the Sun seen from 60 degrees west of Earth: placed where SDO sees it.
    earth_view = hpc(-300, 100)
    stereo = frames.HeliographicStonyhurst(60 * u.deg, 0 * u.deg, 1 * u.AU, obstime="2014-02-05T08:00:00")
    other_view = earth_view.transform_to(
        frames.Helioprojective(observer=stereo, obstime="2014-02-05T08:00:00")
    )
    export = plan_of(
        *walkthrough(cutout=a.jsoc_cutout.Cutout(center=other_view, width=100 * u.pix, height=100 * u.pix))
    )
    assert (export.impatch.x, export.impatch.y) == pytest.approx((-300, 100), abs=0.01)


def test_numbers_are_plain_decimals():
    assert plan.plain_number(500.0) == "500"
    assert plan.plain_number(-517.2) == "-517.2"
    assert plan.plain_number(1e-7, 6) == "0"
    assert plan.plain_number(123456789.0) == "123456789"
    assert plan.plain_number(0.0001234, 6) == "0.000123"


def test_filename_format_is_jsocs_default_with_wavelength():
    assert plan_of(*walkthrough()).filenamefmt == "aia.lev1_euv_12s.{T_REC:A}.{WAVELNTH}.{segment}"


def test_hmi_record_set_and_filename_format():
    export = plan_of(
        *walkthrough(series=a.jsoc.Series("hmi.M_45s"), wavelength=None, sample=None), series=HMI
    )
    assert export.record_set == "hmi.M_45s[2014.02.05_08:00:35_TAI-2014.02.05_16:00:35_TAI]{magnetogram}"
    assert export.filenamefmt == "hmi.M_45s.{T_REC:A}.{CAMERA}.{segment}"
    assert ",cadence=45s," in export.process("A", "B")


def test_method_is_url_tar_for_many_records_and_url_for_few():
    assert plan.ExportPlan.method(4) == "url"
    assert plan.ExportPlan.method(plan.TAR_THRESHOLD + 1) == "url-tar"


def test_size_ratio_is_the_cutout_share_of_a_full_frame():
    export = plan_of(*walkthrough())
    assert export.size_ratio == pytest.approx(500 * 500 / 4096**2)
    assert export.cutout_bytes < 1.1e6


def test_core_wavelength_range_selects_every_channel_inside():
    export = plan_of(*walkthrough(wavelength=a.Wavelength(150 * u.AA, 220 * u.AA)))
    assert "][171,193,211]{image}" in export.record_set


def test_core_wavelength_single_value():
    export = plan_of(*walkthrough(wavelength=a.Wavelength(304 * u.AA)))
    assert "][304]{image}" in export.record_set


def test_segment_attr_selects_segments():
    export = plan_of(*walkthrough(segment=a.jsoc.Segment("spikes")))
    assert export.record_set.endswith("{spikes}")


@pytest.mark.parametrize(
    ("overrides", "series", "message"),
    [
        (
            {"wavelength": a.jsoc_cutout.Wavelength(1600 * u.AA)},
            EUV,
            "1600 Angstrom is not a channel of aia.lev1_euv_12s",
        ),
        (
            {"wavelength": a.Wavelength(400 * u.AA, 500 * u.AA)},
            EUV,
            "no channel of aia.lev1_euv_12s lies in 400-500",
        ),
        ({"sample": a.Sample(6 * u.s)}, EUV, "a.Sample: 6 s is finer than the 12 s cadence"),
        (
            {"cutout": a.jsoc_cutout.Cutout(center=hpc(0, 0), width=5000 * u.pix, height=10 * u.pix)},
            EUV,
            "the width of 5000 pixels is larger than the 4096-pixel detector",
        ),
        (
            {"cutout": a.jsoc_cutout.Cutout(center=hpc(0, 0), width=3000 * u.arcsec, height=10 * u.arcsec)},
            EUV,
            "the width of 5000 pixels is larger than the 4096-pixel detector",
        ),
        (
            {"cutout": a.jsoc_cutout.Cutout(center=hpc(1500, 0), width=10 * u.pix, height=10 * u.pix)},
            EUV,
            "is off the solar disk, and Tracking(True) needs a point on the Sun",
        ),
        (
            {"cutout": a.jsoc_cutout.Cutout(center=(5000, 10) * u.pix, width=10 * u.pix, height=10 * u.pix)},
            EUV,
            "the pixel centre x=5000 is off the 4096x4096 detector",
        ),
        (
            {"cutout": a.jsoc_cutout.Cutout(center=hpc(0, 0), width=10 * u.pix, height=10 * u.arcsec)},
            EUV,
            "width and height must be in the same kind of unit",
        ),
        ({"scale": a.jsoc_cutout.Scale(True)}, EUV, "Scale(True) is not supported yet"),
        ({"notify": a.jsoc.Notify("me@localhost")}, EUV, "'me@localhost' is not an email address"),
        ({"segment": a.jsoc.Segment("magnetogram")}, EUV, "magnetogram is not a segment of aia.lev1_euv_12s"),
        ({"series": a.jsoc.Series("hmi.M_45s")}, HMI, "hmi.M_45s is not indexed by wavelength"),
        ({"time": None}, EUV, "needs a time range"),
        ({"cutout": None, "tracking": a.jsoc_cutout.Tracking(True)}, EUV, "needs a box"),
    ],
)
def test_bad_queries_name_the_parameter(overrides, series, message):
    with pytest.raises(ValueError, match=_literal(message)):
        plan_of(*walkthrough(**overrides), series=series)


def test_off_disk_centre_is_fine_without_tracking():
    export = plan_of(
        *walkthrough(
            cutout=a.jsoc_cutout.Cutout(center=hpc(1500, 0), width=10 * u.pix, height=10 * u.pix),
            tracking=a.jsoc_cutout.Tracking(False),
        )
    )
    assert export.impatch.x == pytest.approx(1500)


def test_missing_series_is_named():
    (params,) = walker.create(a.AttrAnd(walkthrough(series=None)))
    with pytest.raises(ValueError, match=_literal("needs a series: add e.g. a.jsoc.Series")):
        plan.series_name(params)


def test_series_info_from_series_struct():
    body = {
        "primekeys": ["T_REC", "WAVELNTH"],
        "primekeysinfo": [{"name": "T_REC", "slotted": 1, "step": "12s"}, {"name": "WAVELNTH", "slotted": 0}],
        "keywords": [{"name": "T_REC", "type": "time"}, {"name": "WAVELNTH", "type": "int"}],
        "segments": [{"name": "image"}, {"name": "spikes"}],
    }
    info = plan.SeriesInfo.from_series_struct("aia.lev1_euv_12s", body)
    assert info == EUV.__class__(
        name="aia.lev1_euv_12s",
        primekeys=("T_REC", "WAVELNTH"),
        time_keys=frozenset({"T_REC"}),
        step=12.0,
        segments=("image", "spikes"),
    )


@pytest.mark.parametrize(
    ("step", "seconds"), [("12", 12.0), ("12s", 12.0), ("1.000000m", 60.0), ("45.000000", 45.0)]
)
def test_series_step_strings(step, seconds):
    body = {"primekeys": ["T_REC"], "primekeysinfo": [{"name": "T_REC", "slotted": 1, "step": step}]}
    assert plan.SeriesInfo.from_series_struct("x", body).step == seconds


def _literal(text):
    return re.escape(text)
