"""The pure planning rules: record sets, process strings and the checks made before any request."""

import re

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
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
        ({"scale": a.jsoc_cutout.Scale(True)}, HMI, "Scale: hmi.M_45s is not an AIA level-1 series"),
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


# --- every location mode, checked against sunpy.coordinates --------------------------------

T0 = "2014-02-05T08:00:00"
AIA_LEV1 = plan.SeriesInfo(
    name="aia.lev1",
    primekeys=("T_REC", "FSN"),
    time_keys=frozenset({"T_REC", "T_OBS"}),
    step=1.0,
    segments=("image", "spikes"),
)
HMI_720 = plan.SeriesInfo(
    name="hmi.M_720s",
    primekeys=("T_REC", "CAMERA"),
    time_keys=frozenset({"T_REC", "T_OBS"}),
    step=720.0,
    segments=("magnetogram",),
)


def stony(lon, lat, obstime=T0):
    return SkyCoord(lon * u.deg, lat * u.deg, frame=frames.HeliographicStonyhurst(obstime=obstime))


def carrington(lon, lat, obstime=T0):
    return SkyCoord(
        lon * u.deg, lat * u.deg, frame=frames.HeliographicCarrington(obstime=obstime, observer="earth")
    )


def box(center, width=200 * u.arcsec, height=100 * u.arcsec):
    return a.jsoc_cutout.Cutout(center=center, width=width, height=height)


def im_patch_args(export):
    step = export.process("2014-02-05T08:00:01Z", "2014-02-05T15:59:01Z").split("|")[-1]
    return dict(item.split("=", 1) for item in step.split(",")[1:])


def test_stonyhurst_centre_is_sent_as_stony_at_its_obstime():
    args = im_patch_args(plan_of(*walkthrough(cutout=box(stony(-20, 10, obstime="2014-02-05T09:00")))))
    assert (args["locunits"], args["x"], args["y"]) == ("stony", "-20", "10")
    assert args["t_ref"] == "2014-02-05T09:00:00.000"
    assert "car_rot" not in args


def test_stonyhurst_centre_from_a_carrington_point_matches_sunpy():
    # A Carrington point given at t_ref, sent as stony: its Stonyhurst longitude at t_ref.
    point = carrington(120, -8)
    expected = point.transform_to(frames.HeliographicStonyhurst(obstime=T0))
    export = plan_of(*walkthrough(cutout=box(point)))
    # (a Carrington centre goes as carrlong; the stony form of the same point is checked here)
    args = im_patch_args(plan_of(*walkthrough(cutout=box(expected))))
    assert float(args["x"]) == pytest.approx(expected.lon.wrap_at(180 * u.deg).to_value(u.deg), abs=1e-3)
    assert export.impatch.locunits == "carrlong"


def test_carrington_centre_sends_carrlong_with_the_rotation_crossing_nearest_t_ref():
    from sunpy.coordinates import sun

    export = plan_of(*walkthrough(cutout=box(carrington(100, 10))))
    args = im_patch_args(export)
    assert (args["locunits"], args["x"], args["y"]) == ("carrlong", "100", "10")
    car_rot = int(args["car_rot"])
    # Independently: the time longitude 100 is on the meridian in each candidate rotation.
    crossings = {
        n: sun.carrington_rotation_time(n, longitude=100 * u.deg) for n in (car_rot - 1, car_rot, car_rot + 1)
    }
    nearest = min(crossings, key=lambda n: abs((crossings[n] - Time(T0)).to_value(u.day)))
    assert car_rot == nearest == 2146
    # im_patch's order: t_ref, then car_rot, then x.
    step = export.process("A", "B")
    assert ",t_ref=2014-02-05T08:00:00.000,car_rot=2146,x=100,y=10," in step


def test_carrington_rotation_wraps_for_a_longitude_that_crossed_just_before_a_new_rotation():
    from sunpy.coordinates import sun

    # L0 at T0 is about 84 degrees: longitude 2 crosses the meridian about 6 days later, 170
    # crossed about 6 days earlier; either way the crossing chosen is the nearest one.
    for lon in (2, 170, 84):
        car_rot = int(im_patch_args(plan_of(*walkthrough(cutout=box(carrington(lon, 0)))))["car_rot"])
        crossing = sun.carrington_rotation_time(car_rot, longitude=lon * u.deg)
        assert abs((crossing - Time(T0)).to_value(u.day)) <= 27.3 / 2 + 0.1


def test_carrington_centre_requires_tracking():
    with pytest.raises(ValueError, match=_literal("Tracking(False) cannot be used with a Carrington centre")):
        plan_of(*walkthrough(cutout=box(carrington(100, 10)), tracking=a.jsoc_cutout.Tracking(False)))


@pytest.mark.parametrize("centre", [stony(150, 0), carrington(270, 0)], ids=["stony", "carrington"])
def test_heliographic_centre_on_the_far_side_is_refused(centre):
    with pytest.raises(ValueError, match="is on the far side of the Sun at 2014-02-05T08:00"):
        plan_of(*walkthrough(cutout=box(centre)))


def test_degrees_box_is_sent_in_degrees_and_sized_with_sunpy():
    export = plan_of(*walkthrough(cutout=box(stony(0, 20), width=10 * u.deg, height=6 * u.deg)))
    args = im_patch_args(export)
    assert (args["boxunits"], args["width"], args["height"]) == ("degrees", "10", "6")
    corners = SkyCoord(
        [-5, 5] * u.deg, [17, 23] * u.deg, 695700 * u.km, frame=frames.HeliographicStonyhurst(obstime=T0)
    ).transform_to(frames.Helioprojective(observer="earth", obstime=T0))
    width_px = abs(corners.Tx[1] - corners.Tx[0]).to_value(u.arcsec) / 0.6
    assert export.box_pixels[0] == pytest.approx(width_px, rel=0.02)


def test_degrees_box_wider_than_a_hemisphere_is_refused():
    with pytest.raises(ValueError, match="more than a hemisphere"):
        plan_of(*walkthrough(cutout=box(stony(0, 0), width=200 * u.deg, height=10 * u.deg)))


def test_stonyhurst_corners_give_a_stony_centre_and_degree_box():
    export = plan_of(
        *walkthrough(cutout=a.jsoc_cutout.Cutout(bottom_left=stony(-30, -10), top_right=stony(-10, 20)))
    )
    impatch = export.impatch
    assert (impatch.locunits, impatch.boxunits) == ("stony", "degrees")
    assert (impatch.x, impatch.y, impatch.width, impatch.height) == pytest.approx((-20, 5, 20, 30))


def test_carrington_corners_across_zero_longitude_stay_a_small_box():
    export = plan_of(
        *walkthrough(
            cutout=a.jsoc_cutout.Cutout(bottom_left=carrington(80, 0), top_right=carrington(100, 10))
        )
    )
    assert (export.impatch.locunits, export.impatch.boxunits) == ("carrlong", "degrees")
    assert (export.impatch.x, export.impatch.width) == pytest.approx((90, 20))
    wrapped = plan_of(
        *walkthrough(
            cutout=a.jsoc_cutout.Cutout(bottom_left=carrington(355, 0), top_right=carrington(5, 10))
        ),
        series=EUV,
    )
    assert wrapped.impatch.width == pytest.approx(10)
    assert wrapped.impatch.x in (pytest.approx(0), pytest.approx(360))


def test_corners_in_two_frames_meet_in_the_frame_of_the_first():
    second = hpc(300, 150).transform_to(frames.HeliographicStonyhurst(obstime=T0))
    export = plan_of(*walkthrough(cutout=a.jsoc_cutout.Cutout(bottom_left=hpc(-100, -50), top_right=second)))
    assert export.impatch.locunits == "arcsec"
    assert (export.impatch.x, export.impatch.width) == pytest.approx((100, 400), abs=0.01)


def test_pixel_corners_give_a_pixel_box():
    export = plan_of(
        *walkthrough(
            cutout=a.jsoc_cutout.Cutout(bottom_left=(1000, 1200) * u.pix, top_right=(1400, 1500) * u.pix)
        )
    )
    args = im_patch_args(export)
    assert (args["locunits"], args["boxunits"], args["x"], args["y"]) == ("pixels", "pixels", "1200", "1350")
    assert (args["width"], args["height"]) == ("400", "300")


def test_t_ref_more_than_four_hours_from_the_data_is_refused():
    with pytest.raises(ValueError, match="im_patch places the box on an image within 4 hours of t_ref"):
        plan_of(*walkthrough(cutout=box(hpc(0, 0, obstime="2014-02-04T20:00"))))


def test_t_ref_within_four_hours_of_the_data_is_fine():
    export = plan_of(*walkthrough(cutout=box(hpc(0, 0, obstime="2014-02-05T04:30"))))
    assert export.impatch.t_ref == "2014-02-05T04:30:00.000"


def test_t_ref_far_from_the_data_is_fine_without_tracking():
    export = plan_of(
        *walkthrough(cutout=box(hpc(0, 0, obstime="2014-02-01")), tracking=a.jsoc_cutout.Tracking(False))
    )
    assert ",t=1," in export.process("2014-02-05T08:00:01Z", "B")


def test_check_t_ref_is_pure_and_symmetric():
    start, end = Time("2014-02-05T08:00"), Time("2014-02-05T16:00")
    plan.check_t_ref(Time("2014-02-05T19:59"), start, end)
    with pytest.raises(ValueError, match=_literal("4.1 hours from the query's time range")):
        plan.check_t_ref(Time("2014-02-05T20:06"), start, end)


# --- aia.lev1, Scale, HMI -------------------------------------------------------------------


def test_aia_lev1_selects_the_wavelength_with_a_where_clause():
    export = plan_of(
        *walkthrough(
            series=a.jsoc.Series("aia.lev1"), sample=None, wavelength=a.jsoc_cutout.Wavelength(171 * u.AA)
        ),
        series=AIA_LEV1,
    )
    assert export.record_set == (
        "aia.lev1[2014.02.05_08:00:35_TAI-2014.02.05_16:00:35_TAI][? WAVELNTH=171 ?]{image}"
    )
    assert export.where == "WAVELNTH=171"


def test_aia_lev1_several_wavelengths_use_in():
    export = plan_of(*walkthrough(series=a.jsoc.Series("aia.lev1"), sample=None), series=AIA_LEV1)
    assert export.record_set.endswith("][? WAVELNTH IN (171,193,211,304) ?]{image}")


def test_aia_lev1_without_sample_cuts_every_image():
    export = plan_of(*walkthrough(series=a.jsoc.Series("aia.lev1"), sample=None), series=AIA_LEV1)
    assert "@" not in export.record_set


def test_aia_lev1_sample_is_refused_with_the_regular_series_to_use():
    with pytest.raises(ValueError, match=_literal("a.Sample: JSOC cannot sample aia.lev1 reliably")) as error:
        plan_of(*walkthrough(series=a.jsoc.Series("aia.lev1")), series=AIA_LEV1)
    assert "aia.lev1_euv_12s, aia.lev1_uv_24s or aia.lev1_vis_1h" in str(error.value)


def test_aia_lev1_filename_format_names_the_channel():
    export = plan_of(*walkthrough(series=a.jsoc.Series("aia.lev1"), sample=None), series=AIA_LEV1)
    assert export.filenamefmt == "aia.lev1.{T_REC:A}.{WAVELNTH}.{FSN}.{segment}"


def test_sample_that_is_not_whole_slots_is_refused():
    with pytest.raises(
        ValueError, match=r"a\.Sample: 50 s is not a whole number of the 12 s slots.*use 48 s or 60 s"
    ):
        plan_of(*walkthrough(sample=a.Sample(50 * u.s)))


def test_scale_runs_aia_scale_aialev1_before_im_patch():
    export = plan_of(*walkthrough(scale=a.jsoc_cutout.Scale(True)))
    assert export.process("A", "B").startswith("n=0|aia_scale_aialev1|im_patch,t_start=A,")


def test_scale_on_aia_lev1_uses_aia_scale_orig():
    export = plan_of(
        *walkthrough(series=a.jsoc.Series("aia.lev1"), sample=None, scale=a.jsoc_cutout.Scale(True)),
        series=AIA_LEV1,
    )
    assert export.process("A", "B").startswith("n=0|aia_scale_orig|im_patch,")


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("aia.lev1", "aia_scale_orig"),
        ("aia.lev1_euv_12s", "aia_scale_aialev1"),
        ("AIA.lev1_uv_24s", "aia_scale_aialev1"),
    ],
)
def test_aia_scale_step_follows_the_web_form(name, step):
    assert plan.aia_scale_step(EUV.__class__(name, ("T_REC",), frozenset(), 12.0, ("image",))) == step


def test_scaled_arcsec_box_is_sized_at_0_6_arcsec_per_pixel():
    export = plan_of(
        *walkthrough(
            cutout=box(hpc(0, 0), width=300 * u.arcsec, height=150 * u.arcsec),
            scale=a.jsoc_cutout.Scale(True),
        )
    )
    assert export.box_pixels == pytest.approx((500, 250))
    assert export.size_ratio == pytest.approx(500 * 250 / 4096**2)


def test_without_scale_no_aia_scale_step():
    assert plan_of(*walkthrough()).process("A", "B").startswith("n=0|im_patch,")


@pytest.mark.parametrize(("name", "segment"), [("hmi.Ic_45s", "continuum"), ("hmi.M_720s", "magnetogram")])
def test_hmi_series_are_queried_by_time_with_their_camera_key(name, segment):
    info = plan.SeriesInfo(name, ("T_REC", "CAMERA"), frozenset({"T_REC"}), 45.0, (segment,))
    export = plan_of(*walkthrough(series=a.jsoc.Series(name), wavelength=None, sample=None), series=info)
    assert export.record_set == f"{name}[2014.02.05_08:00:35_TAI-2014.02.05_16:00:35_TAI]{{{segment}}}"
    assert export.filenamefmt == f"{name}.{{T_REC:A}}.{{CAMERA}}.{{segment}}"


def test_hmi_arcsec_box_uses_the_hmi_plate_scale():
    export = plan_of(
        *walkthrough(
            series=a.jsoc.Series("hmi.M_720s"),
            wavelength=None,
            sample=None,
            cutout=box(hpc(0, 0), 504 * u.arcsec, 252 * u.arcsec),
        ),
        series=HMI_720,
    )
    assert export.box_pixels == pytest.approx((1000, 500))


def test_cea_series_is_refused_by_name():
    cea = plan.SeriesInfo("hmi.sharp_cea_720s", ("HARPNUM", "T_REC"), frozenset({"T_REC"}), None, ("Br",))
    with pytest.raises(
        ValueError, match=r"hmi\.sharp_cea_720s holds CEA .* im_patch cuts only helioprojective"
    ):
        plan_of(*walkthrough(series=a.jsoc.Series("hmi.sharp_cea_720s"), wavelength=None), series=cea)


def test_series_dims_come_from_series_struct():
    body = {"primekeys": ["T_REC"], "segments": [{"name": "image", "dims": "4096x4096"}]}
    assert plan.SeriesInfo.from_series_struct("x", body).dims == (4096, 4096)


# --- NOAA active regions --------------------------------------------------------------------

NOAA_LISTING = {
    "ObservationTime": [
        "2014.02.01_00:00:00_UT",
        "2014.02.04_00:00:00_UT",
        "2014.02.05_00:00:00_UT",
        "2014.02.06_00:00:00_UT",
    ],
    "LatitudeHG": ["-12", "-11", "-11", "-12"],
    "LongitudeCM": ["-50", "-8", "5", "18"],
}


def test_short_noaa_numbers_get_10000_added_as_on_the_web_form():
    assert a.jsoc_cutout.ActiveRegion(1967).number == 11967
    assert a.jsoc_cutout.ActiveRegion(11967).number == 11967
    assert plan.noaa_record_set(a.jsoc_cutout.ActiveRegion(1967)) == "su_rsb.NOAA_ActiveRegions[][11967]"


def test_active_region_picks_the_report_nearest_the_central_meridian():
    region = plan.pick_active_region(a.jsoc_cutout.ActiveRegion(11967), NOAA_LISTING)
    assert (region.longitude, region.latitude) == (5.0, -11.0)
    assert region.t_ref.isot == "2014-02-05T00:00:00.000"


def test_active_region_skips_reports_with_missing_values():
    listing = {
        key: [*values, bad]
        for (key, values), bad in zip(NOAA_LISTING.items(), ["MISSING", "nan", "0"], strict=True)
    }
    assert plan.pick_active_region(a.jsoc_cutout.ActiveRegion(11967), listing).longitude == 5.0


def test_unknown_active_region_is_an_error_naming_it():
    with pytest.raises(
        ValueError, match=_literal("ActiveRegion: NOAA 19999 is not in JSOC's su_rsb.NOAA_ActiveRegions")
    ):
        plan.pick_active_region(a.jsoc_cutout.ActiveRegion(19999), {"count": []})


def test_active_region_is_sent_as_stony_with_its_report_time():
    region = plan.pick_active_region(a.jsoc_cutout.ActiveRegion(11967), NOAA_LISTING)
    (params,) = walker.create(
        a.AttrAnd(walkthrough(cutout=box(a.jsoc_cutout.ActiveRegion(11967), 300 * u.arcsec, 300 * u.arcsec)))
    )
    export = plan.make_plan(params, EUV, region=region)
    args = im_patch_args(export)
    assert (args["locunits"], args["t_ref"], args["x"], args["y"]) == (
        "stony",
        "2014-02-05T00:00:00.000",
        "5",
        "-11",
    )
    assert export.impatch.describe().startswith('300x300" at NOAA 11967 at Stonyhurst (5, -11) deg')


def test_active_region_must_be_looked_up_first():
    (params,) = walker.create(a.AttrAnd(walkthrough(cutout=box(a.jsoc_cutout.ActiveRegion(11967)))))
    with pytest.raises(ValueError, match="NOAA 11967 has not been looked up"):
        plan.make_plan(params, EUV)


def test_active_region_on_the_far_side_during_the_query_is_refused():
    region = plan.pick_active_region(a.jsoc_cutout.ActiveRegion(11967), NOAA_LISTING)
    (params,) = walker.create(
        a.AttrAnd(
            walkthrough(
                time=a.Time("2014-02-20T00:00", "2014-02-20T01:00"),
                cutout=box(a.jsoc_cutout.ActiveRegion(11967)),
            )
        )
    )
    with pytest.raises(ValueError, match=r"NOAA 11967 .* is on the far side of the Sun at 2014-02-20T00:00"):
        plan.make_plan(params, EUV, region=region)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2014.02.05_00:00:00_UT", "2014-02-05T00:00:00.000"),
        ("2014.02.05_00:00_TAI", "2014-02-04T23:59:25.000"),
        ("2014-02-05T08:00:01Z", "2014-02-05T08:00:01.000"),
        ("2014.02.05", "2014-02-05T00:00:00.000"),
    ],
)
def test_drms_times_are_parsed(text, iso):
    assert plan.parse_drms_time(text).isot == iso
