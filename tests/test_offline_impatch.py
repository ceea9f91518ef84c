"""
Tests of the offline JSOC's procedural Sun (testing/sun.py) and im_patch (testing/impatch.py).

Expected positions are computed independently with sunpy.coordinates and sunpy.map.
"""

from __future__ import annotations

import re

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.time import Time, TimeDelta
from sunpy.coordinates import frames
from sunpy.coordinates import sun as sunpy_sun

from sunpy_jsoc_cutout.testing import catalog, impatch, sun
from sunpy_jsoc_cutout.testing.impatch import ProcessingError

T_REF = "2014-02-05T08:00:00"
AR_LON, AR_LAT = sun.ACTIVE_REGIONS[0][:2]


def make_record(series: str, t: str | Time, channel: int | None = None):
    """The record of ``series`` whose slot holds time ``t`` (UTC), from the offline catalog."""
    t = Time(t, scale="utc")
    key = f"[{channel}]" if channel else ("[2]" if series.startswith("hmi") else "[171]")
    (record,), _ = catalog.query(f"{series}[{t.isot}]{key}")
    return record


AIA, HMI = "aia.lev1_euv_12s", "hmi.M_45s"


class BadQuality:
    """A catalog record that reports a negative QUALITY (no image)."""

    def __init__(self, record):
        self._record = record

    def __getattr__(self, name):
        return getattr(self._record, name)

    def keyword(self, name: str) -> str:
        return "0x80000000" if name.upper() == "QUALITY" else self._record.keyword(name)


class Lookup:
    """catalog.query that counts its calls and marks the records of some T_REC values bad."""

    def __init__(self, bad_t_rec: tuple[str, ...] = ()):
        self.calls: list[str] = []
        self.bad = set(bad_t_rec)

    def __call__(self, ds: str):
        self.calls.append(ds)
        records, segments = catalog.query(ds)
        return [BadQuality(r) if r.keyword("T_REC") in self.bad else r for r in records], segments


def cutout(records, lookup=None, **args) -> list[impatch.Product]:
    args = {"t_ref": T_REF, "t": 0, "r": 0, "c": 0, "locunits": "arcsec", "boxunits": "arcsec", **args}
    process = "n=0|im_patch," + ",".join(f"{k}={v}" for k, v in args.items())
    return impatch.run(records, process, "JSOC_20240101_001", lookup=lookup or Lookup())


def world_of_centre(product: impatch.Product):
    ny, nx = product.data.shape
    m = sunpy.map.Map((product.data, product.header))
    return m.pixel_to_world((nx - 1) / 2 * u.pix, (ny - 1) / 2 * u.pix), m


def hpc_of_carrington(lon: float, lat: float, t: Time) -> SkyCoord:
    c = SkyCoord(lon * u.deg, lat * u.deg, frame=frames.HeliographicCarrington(observer="earth", obstime=t))
    return c.transform_to(frames.Helioprojective(observer="earth", obstime=t))


def peak(data: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(np.nanargmax(data), data.shape), dtype=float)


# ------------------------------------------------------------------------------------------ sun


def test_observer_geometry_matches_sunpy():
    t = Time(T_REF)
    geo = sun.observer_geometry(t + TimeDelta(1234.5, format="sec"))
    t2 = t + TimeDelta(1234.5, format="sec")
    assert geo.l0 == pytest.approx(sunpy_sun.L0(t2).deg, abs=1e-5)
    assert geo.b0 == pytest.approx(sunpy_sun.B0(t2).deg, abs=1e-6)
    assert geo.dsun == pytest.approx(sunpy_sun.earth_distance(t2).to_value(u.m), rel=1e-9)
    assert geo.car_rot == int(sunpy_sun.carrington_rotation_number(t2))


def test_full_disk_header_gives_sunpy_map_with_earth_observer():
    rec = make_record(AIA, T_REF)
    header = sun.full_disk_header(rec)
    m = sunpy.map.Map((np.zeros((2, 2), dtype=np.float32), dict(header, NAXIS1=2, NAXIS2=2)))
    obs = m.observer_coordinate
    assert obs.lat.deg == pytest.approx(sunpy_sun.B0(rec.t_obs).deg, abs=1e-5)
    assert obs.lon.deg == 0
    distance = sunpy_sun.earth_distance(rec.t_obs).to_value(u.m)
    assert obs.radius.to_value(u.m) == pytest.approx(distance, rel=1e-8)
    assert m.wavelength == 171 * u.AA
    assert m.reference_date.isot.startswith("2014-02-05T08:00:")


def test_render_pixels_follow_sunpy_carrington_coordinates():
    rec = make_record(AIA, T_REF)
    header = sun.full_disk_header(rec)
    ar = hpc_of_carrington(AR_LON, AR_LAT, Time(rec.t_obs))
    m = sunpy.map.Map((np.zeros((4096, 4096), dtype=np.float32), header))
    col, row = (round(float(v.value)) for v in m.world_to_pixel(ar))
    patch = sun.render(rec, header, slice(row - 40, row + 41), slice(col - 40, col + 41))
    assert patch.dtype == np.float32
    # The brightest pixel of the patch is the active region's centre.
    np.testing.assert_allclose(peak(patch), [40, 40], atol=1.5)
    quiet = sun.render(rec, header, slice(2040, 2041), slice(2300, 2301))
    assert patch.max() > 3 * quiet[0, 0]


def test_render_differs_between_channels():
    h171 = sun.full_disk_header(make_record(AIA, T_REF, 171))
    h193 = sun.full_disk_header(make_record(AIA, T_REF, 193))
    a = sun.render(make_record(AIA, T_REF, 171), h171, slice(2000, 2010), slice(2000, 2010))
    b = sun.render(make_record(AIA, T_REF, 193), h193, slice(2000, 2010), slice(2000, 2010))
    assert not np.allclose(a, b)


# ------------------------------------------------------------------------------------- im_patch


def test_arcsec_box_has_im_patch_size_and_wcs_centre_on_request():
    rec = make_record(AIA, T_REF)
    (product,) = cutout([rec], x=-300.5, y=-200.25, width=120, height=80, t=1)
    cdelt = product.header["CDELT1"]
    assert product.data.shape == (int(1 + 80 / cdelt), int(1 + 120 / cdelt))
    centre, _ = world_of_centre(product)
    assert abs(centre.Tx.to_value(u.arcsec) + 300.5) < cdelt
    assert abs(centre.Ty.to_value(u.arcsec) + 200.25) < cdelt


def test_tracked_box_at_t_ref_is_centred_on_request():
    rec = make_record(AIA, T_REF)
    (product,) = cutout([rec], x=250, y=100, width=60, height=60, t=0)
    centre, _ = world_of_centre(product)
    cdelt = product.header["CDELT1"]
    assert abs(centre.Tx.to_value(u.arcsec) - 250) < cdelt
    assert abs(centre.Ty.to_value(u.arcsec) - 100) < cdelt


def test_pixel_box_size_is_rounded_width():
    rec = make_record(AIA, T_REF)
    (product,) = cutout([rec], boxunits="pixels", width=100.6, height=50.4)
    assert product.data.shape == (50, 101)


def test_pixel_location_is_one_based_ccd_position():
    rec = make_record(AIA, T_REF)
    (product,) = cutout(
        [rec], locunits="pixels", boxunits="pixels", x=1000, y=3000, width=101, height=101, t=1
    )
    # Array centre (50, 50) is CCD pixel (1000, 3000) counted from 1, i.e. index (2999, 999).
    full = sun.full_disk_header(rec)
    assert product.header["CRPIX1"] - 1 + (1000 - 1) - 50 == pytest.approx(full["CRPIX1"] - 1)
    assert product.header["CRPIX2"] - 1 + (3000 - 1) - 50 == pytest.approx(full["CRPIX2"] - 1)


def test_tracking_keeps_carrington_feature_in_place_while_untracked_drifts():
    t0 = Time(T_REF)
    t1 = t0 + TimeDelta(8 * 3600, format="sec")
    records = [make_record(AIA, t0), make_record(AIA, t1)]
    start = hpc_of_carrington(AR_LON, AR_LAT, t0)
    args = {"x": start.Tx.to_value(u.arcsec), "y": start.Ty.to_value(u.arcsec), "width": 200, "height": 200}

    tracked = cutout(records, **args, t=0)
    fixed = cutout(records, **args, t=1)
    assert [p.data.shape for p in tracked] == [p.data.shape for p in fixed]
    assert np.max(np.abs(peak(tracked[1].data) - peak(tracked[0].data))) <= 2

    # The drift a fixed box sees, from sunpy alone.
    end = hpc_of_carrington(AR_LON, AR_LAT, Time(records[1].t_obs))
    start = hpc_of_carrington(AR_LON, AR_LAT, Time(records[0].t_obs))
    cdelt = fixed[0].header["CDELT1"]
    expected = (
        np.array([(end.Ty - start.Ty).to_value(u.arcsec), (end.Tx - start.Tx).to_value(u.arcsec)]) / cdelt
    )
    drift = peak(fixed[1].data) - peak(fixed[0].data)
    assert expected[1] > 50
    np.testing.assert_allclose(drift, expected, atol=2)


def test_tracked_frames_keep_wcs_of_the_feature():
    t1 = Time(T_REF) + TimeDelta(4 * 3600, format="sec")
    (product,) = cutout(
        [make_record(AIA, t1)],
        locunits="stony",
        boxunits="pixels",
        width=81,
        height=81,
        x=AR_LON - sunpy_sun.L0(Time(T_REF)).deg,
        y=AR_LAT,
    )
    centre, m = world_of_centre(product)
    expected = hpc_of_carrington(AR_LON, AR_LAT, m.reference_date)
    assert abs((centre.Tx - expected.Tx).to_value(u.arcsec)) < 1.5 * product.header["CDELT1"]
    assert abs((centre.Ty - expected.Ty).to_value(u.arcsec)) < 1.5 * product.header["CDELT1"]
    assert product.header["HGCRLN"] == pytest.approx(AR_LON, abs=0.02)


def test_carrlong_box_is_centred_on_the_carrington_position():
    car_rot = int(sunpy_sun.carrington_rotation_number(Time(T_REF)))
    (product,) = cutout(
        [make_record(AIA, T_REF)],
        locunits="carrlong",
        car_rot=car_rot,
        boxunits="pixels",
        width=61,
        height=61,
        x=AR_LON,
        y=AR_LAT,
        t_ref="NotSpecified",
    )
    np.testing.assert_allclose(peak(product.data), [30, 30], atol=1.5)
    assert product.header["HGCARROT"] == car_rot


def test_reference_image_is_nearest_t_ref_in_a_widening_search():
    # Slots at 07:59:49, 08:00:01 and 08:00:13 UTC (T_REC) are the +-15 s window around t_ref.
    lookup = Lookup(bad_t_rec=("2014-02-05T07:59:49Z", "2014-02-05T08:00:01Z", "2014-02-05T08:00:13Z"))
    (product,) = cutout(
        [make_record(AIA, "2014-02-05T08:10:00")], lookup=lookup, x=0, y=0, width=10, height=10
    )
    # +-15 s finds only bad images, so the window doubles once.
    assert len(lookup.calls) == 2
    assert "[? QUALITY >= 0 ?]" in lookup.calls[0]
    assert lookup.calls[0] == (
        "aia.lev1_euv_12s[2014.02.05_08:00:20_TAI-2014.02.05_08:00:50_TAI][? QUALITY >= 0 ?][171]"
    )
    # The reference is then 07:59:37 or 08:00:25 (T_OBS nearest t_ref): its CAR_ROT labels the box.
    assert product.header["HGCARROT"] == 2146


def test_crop_sets_off_limb_pixels_to_nan():
    rec = make_record(AIA, T_REF)
    (cropped,) = cutout([rec], x=960, y=0, width=100, height=40, c=1)
    (plain,) = cutout([rec], x=960, y=0, width=100, height=40, c=0)
    assert np.isnan(cropped.data[:, -1]).all()
    assert np.isfinite(cropped.data[:, 0]).all()
    assert np.isfinite(plain.data).all()


def test_patch_partly_outside_the_ccd_is_padded_with_nan():
    rec = make_record(AIA, T_REF)
    (product,) = cutout([rec], locunits="pixels", boxunits="pixels", x=11, y=11, width=40, height=40, t=1)
    assert product.data.shape == (40, 40)
    assert np.isnan(product.data[:, :5]).all()
    assert np.isnan(product.data[:5, :]).all()
    assert np.isfinite(product.data[10:, 10:]).all()


def test_register_sets_crota2_to_zero_and_keeps_target_on_centre():
    rec = make_record(AIA, T_REF, 304)
    (product,) = cutout([rec], x=-420, y=310, width=90, height=60, r=1)
    (plain,) = cutout([rec], x=-420, y=310, width=90, height=60, r=0)
    assert product.header["CROTA2"] == 0.0
    assert plain.header["CROTA2"] != 0.0
    assert product.data.shape == plain.data.shape
    assert any("Image registered by shift of" in h for h in product.header["HISTORY"])
    centre, _ = world_of_centre(product)
    assert abs(centre.Tx.to_value(u.arcsec) + 420) < 0.1
    assert abs(centre.Ty.to_value(u.arcsec) - 310) < 0.1


def test_hmi_patch_is_rotated_north_up():
    rec = make_record(HMI, T_REF)
    (product,) = cutout([rec], x=-150, y=250, width=50, height=30)
    assert abs(product.header["CROTA2"]) < 1
    assert "Image rotated 180 degrees." in product.header["HISTORY"]
    centre, m = world_of_centre(product)
    cdelt = product.header["CDELT1"]
    assert abs(centre.Tx.to_value(u.arcsec) + 150) < cdelt
    assert abs(centre.Ty.to_value(u.arcsec) - 250) < cdelt
    top = m.pixel_to_world(0 * u.pix, (product.data.shape[0] - 1) * u.pix)
    assert top.Ty > centre.Ty


def test_output_header_has_im_patch_keywords():
    rec = make_record(AIA, T_REF)
    (product,) = cutout(
        [rec], x=0, y=0, width=30, height=30, t_start="2014.02.05_07:59:00_TAI", t_stop="2014-02-05T08:01:00"
    )
    h = product.header
    for key in (
        "SOURCE",
        "T_REC",
        "CRPIX1",
        "CRPIX2",
        "CRVAL1",
        "CRVAL2",
        "CROTA2",
        "CONTENT",
        "REQUESTID",
        "HGBOXUNITS",
        "HGLOCUNITS",
        "HGWIDE",
        "HGHIGH",
        "HGCRLN",
        "HGCRLT",
        "HGCARROT",
        "HGTSTART",
        "HGTSTOP",
        "DATE",
        "HGQUERY",
        "HISTORY",
        "COMMENT",
        "DATAMIN",
        "DATAMAX",
    ):
        assert key in h
    assert h["CONTENT"] == "Tracked Extracted Patches, made by im_patch"
    assert h["REQUESTID"] == "JSOC_20240101_001"
    assert h["SOURCE"] == rec.spec
    assert h["HGTSTART"] == "2014.02.05_07:59:00_TAI"
    assert h["CRVAL1"] == h["CRVAL2"] == 0
    assert product.spec.startswith("aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z]")


def test_t_start_and_t_stop_filter_the_records():
    records = [make_record(AIA, Time(T_REF) + TimeDelta(12 * i, format="sec")) for i in range(6)]
    products = cutout(
        records, x=0, y=0, width=10, height=10, t_start="2014-02-05T08:00:14", t_stop="2014-02-05T08:00:37Z"
    )
    assert [p.header["T_REC"] for p in products] == ["2014-02-05T08:00:25Z", "2014-02-05T08:00:37Z"]


def test_bad_quality_records_are_skipped():
    records = [make_record(AIA, T_REF), BadQuality(make_record(AIA, "2014-02-05T08:00:12"))]
    assert len(cutout(records, x=0, y=0, width=10, height=10)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"locunits": "NotSpecified"}, "Location units not detected"),
        ({"locunits": "furlongs"}, "Location units not detected"),
        ({"boxunits": "inches"}, "Location units not detected"),
        ({"t_ref": "NotSpecified"}, "t_ref must be provided for locunits!=carrlong"),
        (
            {"locunits": "carrlong", "t_ref": "NotSpecified"},
            "Carrington rotation number must be provided for locunits=carrlong",
        ),
    ],
)
def test_im_patch_errors_have_jsoc_messages(args, message):
    with pytest.raises(ProcessingError, match=re.escape(message)):
        cutout([make_record(AIA, T_REF)], **{"x": 0, "y": 0, "width": 10, "height": 10, **args})


def test_missing_locunits_without_t_ref_reports_t_ref_first():
    process = "n=0|im_patch,x=0,y=0,width=10,height=10,boxunits=arcsec"
    with pytest.raises(ProcessingError, match="t_ref must be provided"):
        impatch.run([make_record(AIA, T_REF)], process, "JSOC_20240101_001", lookup=Lookup())


def test_parse_process_splits_steps_and_arguments():
    steps = impatch.parse_process("n=0|im_patch,t_ref=2014-02-05T08:00:00,t=0,x=-517.2,c|aia_scale_aialev1")
    assert steps == [
        ("im_patch", {"t_ref": "2014-02-05T08:00:00", "t": "0", "x": "-517.2", "c": "1"}),
        ("aia_scale_aialev1", {}),
    ]
    assert impatch.parse_process("n=0|no_op") == []


def test_spec_without_time_filter_builds_records_from_t_start_t_stop_and_cadence():
    lookup = Lookup()
    products = impatch.run(
        [],
        "n=0|im_patch,t_start=2014.02.05_08:00:00_TAI,t_stop=2014.02.05_08:02:00_TAI,"
        "t=1,cadence=1m,locunits=arcsec,boxunits=pixels,t_ref=2014-02-05T08:00:00,"
        "x=0,y=0,width=10,height=10",
        "JSOC_20240101_001",
        lookup=lookup,
        ds="aia.lev1_euv_12s[$][171]",
    )
    assert lookup.calls[-1] == "aia.lev1_euv_12s[2014.02.05_08:00:00_TAI-2014.02.05_08:02:00_TAI@60s][171]"
    assert len(products) == 3


def test_parse_drms_time_reads_no_zone_as_utc():
    assert impatch.parse_drms_time("2014.02.05_08:00:00").isot == "2014-02-05T08:00:00.000"
    assert impatch.parse_drms_time("2014.02.05_08:00_TAI").utc.isot == "2014-02-05T07:59:25.000"
    assert impatch.parse_drms_time("2014-02-05T08:00:00Z").isot == "2014-02-05T08:00:00.000"
    assert impatch.parse_drms_time("2014.02.06_00:00:00Z").isot == "2014-02-06T00:00:00.000"
    assert impatch.parse_drms_time("NotSpecified") is None
    assert impatch.parse_cadence("48") == 0
    assert impatch.parse_cadence("2m") == 120


# ------------------------------------------------------------------------------ issue 3 geometry

STONY_X = AR_LON - sunpy_sun.L0(Time(T_REF)).deg  # the feature's Stonyhurst longitude at T_REF


def feature_pixel(product: impatch.Product) -> np.ndarray:
    """(row, col) in the product of the Carrington feature, from sunpy.map alone."""
    m = sunpy.map.Map((product.data, product.header))
    x, y = m.world_to_pixel(hpc_of_carrington(AR_LON, AR_LAT, m.reference_date))
    return np.array([float(y.value), float(x.value)])


@pytest.mark.parametrize(
    "location",
    [
        {"locunits": "stony", "x": STONY_X, "y": AR_LAT},
        {
            "locunits": "carrlong",
            "x": AR_LON,
            "y": AR_LAT,
            "car_rot": int(sunpy_sun.carrington_rotation_number(Time(T_REF))),
            "t_ref": "NotSpecified",
        },
    ],
    ids=["stony", "carrlong"],
)
def test_tracked_carrington_feature_stays_within_two_pixels_over_eight_hours(location):
    times = [Time(T_REF) + TimeDelta(h * 3600, format="sec") for h in (0, 4, 8)]
    products = cutout(
        [make_record(AIA, t) for t in times], boxunits="pixels", width=101, height=101, **location
    )
    assert len(products) == 3
    for product in products:
        np.testing.assert_allclose(feature_pixel(product), [50, 50], atol=2)


def test_untracked_stony_box_drifts_by_the_rotation_sunpy_predicts():
    t0, t1 = Time(T_REF), Time(T_REF) + TimeDelta(8 * 3600, format="sec")
    first, last = cutout(
        [make_record(AIA, t0), make_record(AIA, t1)],
        locunits="stony",
        boxunits="pixels",
        width=301,
        height=301,
        x=STONY_X,
        y=AR_LAT,
        t=1,
    )
    drift = feature_pixel(last) - feature_pixel(first)
    start = hpc_of_carrington(AR_LON, AR_LAT, Time(first.record.t_obs))
    end = hpc_of_carrington(AR_LON, AR_LAT, Time(last.record.t_obs))
    cdelt = first.header["CDELT1"]
    expected = (
        np.array([(end.Ty - start.Ty).to_value(u.arcsec), (end.Tx - start.Tx).to_value(u.arcsec)]) / cdelt
    )
    assert expected[1] > 100
    np.testing.assert_allclose(drift, expected, atol=2)
    # The box itself did not move on the CCD.
    assert first.header["CRPIX1"] == pytest.approx(last.header["CRPIX1"], abs=2)


def test_degrees_box_size_is_the_box_projected_at_central_meridian():
    (product,) = cutout(
        [make_record(AIA, T_REF)], locunits="stony", boxunits="degrees", x=0, y=0, width=5, height=3
    )
    h = product.header
    rsun_pix = np.degrees(np.arcsin(h["RSUN_REF"] / h["DSUN_OBS"])) * 3600 / h["CDELT1"]
    # Chord of 5 degrees of longitude (and 3 of latitude) on the disk, plus im_patch's one pixel.
    assert product.data.shape[1] == pytest.approx(2 * rsun_pix * np.sin(np.radians(2.5)) + 1, abs=1.5)
    assert product.data.shape[0] == pytest.approx(2 * rsun_pix * np.sin(np.radians(1.5)) + 1, abs=1.5)


def test_degrees_box_is_placed_from_the_disk_centre_as_im_patch_does():
    # im_patch adds the box's lower-left corner, projected relative to the DISK centre, to the
    # tracked box centre; away from latitude B0 the patch therefore misses its target in y.
    args = {"locunits": "stony", "boxunits": "degrees", "x": STONY_X, "y": AR_LAT, "width": 4, "height": 4}
    (degrees,) = cutout([make_record(AIA, T_REF)], **args)
    row, col = feature_pixel(degrees)
    assert abs(col - (degrees.data.shape[1] - 1) / 2) <= 2
    b0 = sunpy_sun.B0(Time(T_REF)).deg
    rsun_pix = 960 / degrees.header["CDELT1"]
    offset = rsun_pix * np.sin(np.radians(AR_LAT - b0))  # the target's distance from the equator of the view
    assert row - (degrees.data.shape[0] - 1) / 2 == pytest.approx(-offset, abs=0.05 * abs(offset) + 3)


@pytest.mark.parametrize("series", ["hmi.M_45s", "hmi.Ic_45s", "hmi.M_720s"])
def test_every_hmi_series_is_rotated_north_up_with_output_keywords(series):
    (product,) = cutout(
        [make_record(series, T_REF, 3 if series.endswith("720s") else 2)], x=100, y=-200, width=40, height=40
    )
    h = product.header
    assert abs(h["CROTA2"]) < 1
    assert "Image rotated 180 degrees." in h["HISTORY"]
    for key in (
        "SOURCE",
        "CRDELT1",
        "CRDELT2",
        "CRLN_OBS",
        "HGCRLN",
        "HGCRLT",
        "HGCARROT",
        "HGQUERY",
        "DATE",
    ):
        assert key in h
    assert product.spec.startswith(series + "_mod[")
    centre, _ = world_of_centre(product)
    assert abs(centre.Tx.to_value(u.arcsec) - 100) < h["CDELT1"]
    assert abs(centre.Ty.to_value(u.arcsec) + 200) < h["CDELT1"]


def test_continuum_shows_a_dark_spot_at_the_active_region():
    (product,) = cutout(
        [make_record("hmi.Ic_45s", T_REF)],
        locunits="stony",
        boxunits="pixels",
        x=STONY_X,
        y=AR_LAT,
        width=61,
        height=61,
    )
    assert product.header["CONTENT"] == "Tracked Extracted Patches, made by im_patch"
    assert product.data[30, 30] < 0.6 * product.data[0, 0]


# ----------------------------------------------------------------------------- aia.lev1 cadence


def lev1_cutout(ds: str, lookup=None, **args):
    args = {
        "t_ref": T_REF,
        "t": 0,
        "r": 0,
        "c": 0,
        "locunits": "arcsec",
        "boxunits": "pixels",
        "x": 0,
        "y": 0,
        "width": 8,
        "height": 8,
        **args,
    }
    process = "n=0|im_patch," + ",".join(f"{k}={v}" for k, v in args.items())
    lookup = lookup or Lookup()
    records, _ = catalog.query(ds)
    return impatch.run(records, process, "JSOC_20240101_001", lookup=lookup, ds=ds), lookup


def obs_seconds(products) -> np.ndarray:
    return np.array([(Time(p.record.t_obs) - Time(T_REF)).sec for p in products])


def test_aia_lev1_cadence_takes_one_record_per_slot():
    ds = "aia.lev1[2014.02.05_08:00:00_TAI/5m@60s][? WAVELNTH=171 ?]"
    products, _ = lev1_cutout(ds, cadence="60s")
    assert {p.header["WAVELNTH"] for p in products} == {171}
    assert len(products) == 5
    np.testing.assert_allclose(np.diff(obs_seconds(products)), 60, atol=12)
    assert products[0].header["HGQUERY"].startswith("@/tmp/im_patch")


def test_aia_lev1_cadence_skips_bad_images_for_their_neighbours():
    ds = "aia.lev1[2014.02.05_08:00:00_TAI/5m@60s][? WAVELNTH=171 ?]"
    good, _ = lev1_cutout(ds, cadence="60s")
    bad_t_rec = good[2].header["T_REC"]
    products, _ = lev1_cutout(ds, lookup=Lookup(bad_t_rec=(bad_t_rec,)), cadence="60s")
    assert len(products) == 5
    assert bad_t_rec not in [p.header["T_REC"] for p in products]
    assert abs(obs_seconds(products)[2] - obs_seconds(good)[2]) == pytest.approx(12, abs=1)


def test_aia_lev1_without_at_in_the_spec_ignores_cadence():
    products, _ = lev1_cutout("aia.lev1[2014.02.05_08:00:00_TAI/2m][? WAVELNTH=171 ?]", cadence="60s")
    assert len(products) == 10


def test_aia_lev1_last_record_spec_builds_the_cadence_query_from_t_start_and_t_stop():
    products, lookup = lev1_cutout(
        "aia.lev1[$][? WAVELNTH=193 ?]",
        cadence="1m",
        t_start="2014.02.05_08:00:00_TAI",
        t_stop="2014.02.05_08:04:00_TAI",
    )
    assert lookup.calls[-1] == "aia.lev1[2014.02.05_08:00:00_TAI-2014.02.05_08:04:00_TAI][? WAVELNTH=193 ?]"
    assert len(products) == 4
    assert {p.header["WAVELNTH"] for p in products} == {193}


# ------------------------------------------------------------------------------------- aia_scale


def test_aia_scale_writes_a_level_1p5_image_centred_on_the_sun():
    rec = make_record(AIA, T_REF, 193)
    (product,) = impatch.run([rec], "n=0|aia_scale_aialev1,wide=64,high=48", "JSOC_20240101_001")
    h = product.header
    assert product.data.shape == (48, 64)
    assert (h["CDELT1"], h["CDELT2"], h["CROTA2"], h["LVL_NUM"]) == (
        pytest.approx(0.6),
        pytest.approx(0.6),
        0,
        1.5,
    )
    assert (h["CRPIX1"], h["CRPIX2"]) == (32.5, 24.5)
    assert any("aia_lev1p5" in line for line in h["HISTORY"])
    assert product.spec.startswith("aia.lev1_euv_12s_mod[")
    centre = sunpy.map.Map((product.data, h)).pixel_to_world(31.5 * u.pix, 23.5 * u.pix)
    assert abs(centre.Tx.to_value(u.arcsec)) < 1e-6
    assert abs(centre.Ty.to_value(u.arcsec)) < 1e-6


def test_aia_scale_before_im_patch_gives_a_north_up_point_six_arcsec_cutout():
    rec = make_record(AIA, T_REF, 171)
    process = (
        "n=0|aia_scale_aialev1|im_patch,t_ref=2014-02-05T08:00:00,t=0,r=0,c=0,locunits=arcsec,"
        "boxunits=arcsec,x=-300,y=150,width=120,height=60"
    )
    (product,) = impatch.run([rec], process, "JSOC_20240101_001", lookup=Lookup())
    h = product.header
    assert product.data.shape == (int(1 + 60 / 0.6), int(1 + 120 / 0.6))
    assert h["CDELT1"] == pytest.approx(0.6)
    assert h["CROTA2"] == 0
    assert h["LVL_NUM"] == 1.5
    assert h["CONTENT"] == "Tracked Extracted Patches, made by im_patch"
    centre, _ = world_of_centre(product)
    assert abs(centre.Tx.to_value(u.arcsec) + 300) < 0.6
    assert abs(centre.Ty.to_value(u.arcsec) - 150) < 0.6


def test_aia_scale_on_hmi_is_refused():
    with pytest.raises(ProcessingError, match=r"hmi\.M_45s is not an AIA level-1 series"):
        impatch.run(
            [make_record(HMI, T_REF)], "n=0|aia_scale_other|im_patch,t_ref=2014-02-05T08:00:00", "JSOC_1"
        )


def test_aia_scale_after_im_patch_is_refused():
    with pytest.raises(ProcessingError, match="aia_scale only before im_patch"):
        impatch.run([make_record(AIA, T_REF)], "n=0|im_patch,x=0|aia_scale_aialev1", "JSOC_1")


# ------------------------------------------------------------------------------------ CEA series


def test_sharp_cea_series_cannot_be_cut_out():
    records, _ = catalog.query("hmi.sharp_cea_720s[3563][2014.02.05_08:00:00_TAI]")
    # The reference search puts a time range in the HARPNUM slot, which DRMS cannot parse.
    with pytest.raises(ProcessingError, match="No input data found within 2-hours of t_ref"):
        cutout(records, x=0, y=0, width=10, height=10)


def test_cea_reference_image_fails_im_patch_ctype_check():
    sharp, _ = catalog.query("hmi.sharp_cea_720s[3563][2014.02.05_08:00:00_TAI]")
    with pytest.raises(ProcessingError, match="CTYPE1 not HPLN-TAN as required, is:  CRLN-CEA"):
        cutout(sharp, lookup=lambda ds: (sharp, []), x=0, y=0, width=10, height=10)
