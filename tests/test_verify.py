"""
Verification of downloaded cutouts against the export plan (sunpy_jsoc_cutout.verify).

The files are real products of the offline JSOC: its im_patch run on records of its catalog and
written with astropy.io.fits, or exported end to end through its server. Each check has a case
that passes and one that fails.
"""

from __future__ import annotations

import dataclasses
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from sunpy.coordinates import frames
from sunpy.coordinates import sun as sunpy_sun
from sunpy.net import Fido
from sunpy.net import attrs as a

from sunpy_jsoc_cutout import jsoc, plan, retrieve, verify
from sunpy_jsoc_cutout.testing import catalog, impatch

T_REF = "2014-02-05T08:00:00"
AIA, HMI = "aia.lev1_euv_12s", "hmi.M_45s"
# A box on the disk, away from the limb, as the plan would send it.
TRACKED = verify.Expectation(
    series=AIA,
    impatch=plan.ImPatch(
        locunits="arcsec", x=-200.0, y=150.0, boxunits="arcsec", width=120.0, height=80.0, t_ref=T_REF
    ),
)


def changed(expectation: verify.Expectation, **changes) -> verify.Expectation:
    """``expectation`` with some fields replaced: ``series`` and ``scale``, or im_patch arguments."""
    outer = {name: changes.pop(name) for name in ("series", "scale") if name in changes}
    return dataclasses.replace(
        expectation, impatch=dataclasses.replace(expectation.impatch, **changes), **outer
    )


# A box across the west limb, where cropping has something to blank.
LIMB = changed(TRACKED, x=930.0, y=100.0, width=150.0, height=150.0, tracking=False)


def records(ds: str):
    found, _ = catalog.query(ds)
    return found


def steps(expectation: verify.Expectation, found) -> str:
    """
    The im_patch step the plan sends for the records ``found``, as ``ImPatch.arguments`` writes it.

    The cadence is the series' slot step, as the plan sends it without a.Sample; im_patch
    ignores it for an explicit list of records anyway.
    """
    t_start, t_stop = found[0].keyword("T_REC"), found[-1].keyword("T_REC")
    cadence = f"{plan.plain_number(found[0].series.step, 6)}s"
    return expectation.impatch.arguments(t_start, t_stop, cadence)


def cut(expectation, ds=f"{AIA}[{T_REF}Z][171]"):
    """The offline JSOC's im_patch products for the records of ``ds``."""
    found = records(ds)
    return impatch.run(found, "n=0|" + steps(expectation, found), "JSOC_20240101_001")


def write(product, path, *, header_edits=None, data=None):
    """Write a product as JSOC's export does: one image HDU with CHECKSUM/DATASUM."""
    header = fits.Header()
    for key, value in {**product.header, **(header_edits or {})}.items():
        if key in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"):
            continue
        if key in ("HISTORY", "COMMENT"):
            for line in value:
                header.add_history(line) if key == "HISTORY" else header.add_comment(line)
        elif value is not None:
            header.append(fits.Card(key if len(key) <= 8 else f"HIERARCH {key}", value))
    for key, value in (header_edits or {}).items():
        if value is None and key in header:
            del header[key]
    array = product.data if data is None else data
    fits.PrimaryHDU(array, header).writeto(path, checksum=True, overwrite=True)
    return path


def check(product, expectation, tmp_path, name="cutout.fits", **edits):
    return verify.check_cutout(write(product, tmp_path / name, **edits), expectation)


@pytest.fixture(scope="module")
def tracked_product():
    (product,) = cut(TRACKED)
    return product


@pytest.fixture(scope="module")
def limb_products():
    """The same limb box cut with crop and without."""
    (plain,) = cut(LIMB)
    (cropped,) = cut(changed(LIMB, crop=True))
    return plain, cropped


# ------------------------------------------------------------------------------- good cutouts


def test_tracked_cutouts_of_two_channels_over_four_hours_pass(tmp_path):
    products = cut(TRACKED, ds=f"{AIA}[{T_REF}Z/5h@2h][171,193]")
    assert len(products) == 6
    paths = [write(p, tmp_path / f"{i}.fits") for i, p in enumerate(products)]
    assert verify.check_cutouts(paths, TRACKED) == []


def test_stony_centre_is_tracked_from_t_ref(tmp_path):
    stony = changed(TRACKED, locunits="stony", x=-30.0, y=10.0, boxunits="pixels")
    products = cut(stony, ds=f"{AIA}[{T_REF}Z/5h@4h][171]")
    assert len(products) == 2
    paths = [write(p, tmp_path / f"{i}.fits") for i, p in enumerate(products)]
    assert verify.check_cutouts(paths, stony) == []


def test_carrington_centre_is_tracked(tmp_path):
    t_ref = Time(T_REF)
    point = SkyCoord(20 * u.deg, -5 * u.deg, frame=frames.HeliographicStonyhurst(obstime=t_ref)).transform_to(
        frames.HeliographicCarrington(observer="earth", obstime=t_ref)
    )
    carr = changed(
        TRACKED,
        locunits="carrlong",
        x=round(point.lon.deg, 3),
        y=round(point.lat.deg, 3),
        car_rot=int(sunpy_sun.carrington_rotation_number(t_ref)),
    )
    products = cut(carr, ds=f"{AIA}[{T_REF}Z/5h@4h][171]")
    paths = [write(p, tmp_path / f"{i}.fits") for i, p in enumerate(products)]
    assert verify.check_cutouts(paths, carr) == []


def test_pixel_centre_is_checked_against_im_patch_target(tmp_path):
    pixels = changed(TRACKED, locunits="pixels", x=1500.0, y=2500.0, boxunits="pixels", width=120.5)
    (product,) = cut(pixels)
    # C's round(): 120.5 pixels make 121.
    assert product.data.shape == (80, 121)
    assert check(product, pixels, tmp_path) is None
    moved = float(product.header["CRPIX1"]) + 4
    assert "pixels from im_patch's target" in check(product, pixels, tmp_path, header_edits={"CRPIX1": moved})


def test_hmi_cutout_turned_by_180_degrees_passes(tmp_path):
    hmi = changed(TRACKED, series=HMI)
    products = cut(hmi, ds=f"{HMI}[{T_REF}_TAI/3h@2h][2]")
    assert any("Image rotated 180 degrees." in p.header["HISTORY"] for p in products)
    paths = [write(p, tmp_path / f"{i}.fits") for i, p in enumerate(products)]
    assert verify.check_cutouts(paths, hmi) == []


DEGREES = changed(TRACKED, x=300.0, y=600.0, boxunits="degrees", width=6.0, height=8.0)


@pytest.mark.parametrize(
    ("expectation", "ds"),
    [
        (DEGREES, f"{AIA}[{T_REF}Z/5h@4h][171,193]"),
        (changed(DEGREES, y=-500.0, tracking=False), f"{AIA}[{T_REF}Z/5h@4h][171]"),
        (changed(DEGREES, series=HMI, x=-300.0, y=-50.0), f"{HMI}[{T_REF}_TAI/5h@4h][2]"),
        (
            changed(DEGREES, series=HMI, x=-300.0, y=-50.0, register=True),
            f"{HMI}[{T_REF}_TAI][2]",
        ),
    ],
    ids=["aia-two-channels", "aia-untracked", "hmi", "hmi-registered"],
)
def test_box_in_degrees_passes_where_im_patch_puts_it(expectation, ds, tmp_path):
    # im_patch displaces an unregistered degree box along y by about Rsun sin(latitude - B0).
    products = cut(expectation, ds=ds)
    assert products
    paths = [write(p, tmp_path / f"{i}.fits") for i, p in enumerate(products)]
    assert verify.check_cutouts(paths, expectation) == []


def test_box_in_degrees_of_another_size_fails(tmp_path):
    (product,) = cut(DEGREES)
    wider = changed(DEGREES, width=9.0)
    assert "the width is" in check(product, wider, tmp_path, header_edits={"HGWIDE": 9.0})


def test_untracked_box_stays_on_the_requested_pixels(tmp_path):
    fixed = changed(TRACKED, tracking=False)
    products = cut(fixed, ds=f"{AIA}[{T_REF}Z/5h@4h][171]")
    paths = [write(p, tmp_path / f"{i}.fits") for i, p in enumerate(products)]
    assert verify.check_cutouts(paths, fixed) == []


def test_expectation_holds_what_the_plan_sends(jsoc_env):
    res = Fido.search(*one_record_query())
    planned = res[0].exports[0].plan
    expected = verify.expectation_from_plan(planned)
    assert expected == verify.Expectation(
        series=AIA,
        impatch=plan.ImPatch(
            locunits="arcsec",
            x=float(plan.plain_number(planned.impatch.x)),
            y=float(plan.plain_number(planned.impatch.y)),
            boxunits="pixels",
            width=120.0,
            height=80.0,
            t_ref=planned.impatch.t_ref,
            tracking=True,
            register=False,
            crop=False,
        ),
        scale=False,
    )


# ------------------------------------------------------------------------------ each check


def test_box_of_wrong_size_fails(tracked_product, tmp_path):
    trimmed = tracked_product.data[:, :-3]
    reason = check(tracked_product, TRACKED, tmp_path, data=trimmed)
    assert "the width is 198 pixels" in reason
    assert "201" in reason


def test_box_sent_in_other_units_fails(tracked_product, tmp_path):
    as_pixels = changed(TRACKED, boxunits="pixels")
    reason = check(tracked_product, as_pixels, tmp_path)
    assert "HGBOXUNITS is 'arcsec', but 'pixels' was sent" in reason
    assert "a box of 120 pixels is 120 pixels" in reason


def test_missing_content_means_im_patch_was_not_applied(tracked_product, tmp_path):
    reason = check(tracked_product, TRACKED, tmp_path, header_edits={"CONTENT": None})
    assert reason.startswith("JSOC did not apply im_patch: the file has no CONTENT keyword")


def test_missing_hg_keyword_fails(tracked_product, tmp_path):
    assert check(tracked_product, TRACKED, tmp_path) is None
    reason = check(tracked_product, TRACKED, tmp_path, header_edits={"HGCRLN": None})
    assert reason == "im_patch's keywords HGCRLN are missing"


def test_box_centred_off_the_tracked_point_fails(tracked_product, tmp_path):
    # Moving the Sun's centre by 3 pixels in the file moves the box 3 pixels off its target.
    crpix1 = float(tracked_product.header["CRPIX1"]) + 3
    reason = check(tracked_product, TRACKED, tmp_path, header_edits={"CRPIX1": crpix1})
    assert "pixels from the requested point at T_OBS" in reason


def test_untracked_frames_fail_a_tracked_expectation(tmp_path):
    # A box that stayed put while the Sun turned for 4 hours is ~40 arcsec off the target.
    fixed = changed(TRACKED, tracking=False)
    first, later = cut(fixed, ds=f"{AIA}[{T_REF}Z/5h@4h][171]")
    assert check(first, TRACKED, tmp_path, "first.fits") is None
    assert "pixels from the requested point" in check(later, TRACKED, tmp_path, "later.fits")


def test_registered_cutout_has_crota2_zero(tmp_path):
    registered = changed(TRACKED, register=True)
    (product,) = cut(registered)
    assert check(product, registered, tmp_path) is None
    reason = check(product, registered, tmp_path, header_edits={"CROTA2": 0.01})
    assert "CROTA2 is 0.0100 deg, but a registered cutout has CROTA2 = 0" in reason


def test_unregistered_cutout_fails_a_registered_expectation(tracked_product, tmp_path):
    reason = check(tracked_product, changed(TRACKED, register=True), tmp_path)
    assert "JSOC did not register it" in reason


def test_cropped_cutout_is_nan_off_the_limb_only(limb_products, tmp_path):
    _, cropped = limb_products
    assert np.isnan(cropped.data).any()
    assert np.isfinite(cropped.data).any()
    assert check(cropped, changed(LIMB, crop=True), tmp_path) is None


def test_finite_pixels_off_the_limb_fail_a_crop(limb_products, tmp_path):
    plain, _ = limb_products
    assert check(plain, LIMB, tmp_path) is None
    reason = check(plain, changed(LIMB, crop=True), tmp_path)
    assert "pixels off the limb are not NaN: JSOC did not crop it" in reason


def test_nan_on_the_disk_fails_a_crop(limb_products, tmp_path):
    _, cropped = limb_products
    data = cropped.data.copy()
    data[:, : data.shape[1] // 3] = np.nan  # the eastern third of the box is on the disk
    reason = check(cropped, changed(LIMB, crop=True), tmp_path, data=data)
    assert "pixels on the disk are NaN: the crop is not at the limb" in reason


def test_scaled_cutout_passes(tmp_path):
    scaled = changed(TRACKED, scale=True)
    found = records(f"{AIA}[{T_REF}Z][171]")
    # The web form puts aia_scale before im_patch.
    process = "n=0|aia_scale_aialev1|" + steps(scaled, found)
    try:
        (product,) = impatch.run(found, process, "JSOC_20240101_001")
    except impatch.ProcessingError as exc:
        pytest.skip(f"the offline JSOC cannot run aia_scale yet ({exc})")
    assert check(product, scaled, tmp_path) is None


def test_unscaled_cutout_fails_a_scaled_expectation(tracked_product, tmp_path):
    reason = check(tracked_product, changed(TRACKED, scale=True), tmp_path)
    assert "JSOC did not scale it to level 1.5" in reason


def test_corrupted_checksum_fails(tracked_product, tmp_path):
    path = write(tracked_product, tmp_path / "cutout.fits")
    assert verify.check_cutout(path, TRACKED) is None
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # a byte of the data, inside the last 2880-byte block
    path.write_bytes(bytes(raw))
    reason = verify.check_cutout(path, TRACKED)
    assert reason.startswith("the FITS file is damaged:")
    assert "checksum" in reason.lower()


def test_check_cutouts_lists_each_failed_file_with_its_reason(tracked_product, tmp_path):
    good = write(tracked_product, tmp_path / "good.fits")
    bad = write(tracked_product, tmp_path / "bad.fits", header_edits={"CONTENT": "MAGNETOGRAM"})
    failures = verify.check_cutouts([good, bad], TRACKED)
    assert [path for path, _ in failures] == [str(bad)]
    assert "CONTENT 'MAGNETOGRAM'" in failures[0][1]


# -------------------------------------------------------------------- end to end, over HTTP


def one_record_query():
    centre = SkyCoord(
        -200 * u.arcsec, 150 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=T_REF)
    )
    return (
        a.Time(T_REF, "2014-02-05T08:00:05"),
        a.jsoc.Series(AIA),
        a.jsoc_cutout.Wavelength(171 * u.AA),
        a.jsoc_cutout.Cutout(center=centre, width=120 * u.pix, height=80 * u.pix),
    )


def export_and_download(tmp_path):
    """Search, export and download through the offline JSOC; the plan and the files."""
    res = Fido.search(*one_record_query())
    planned = res[0].exports[0]
    assert planned.count == 1
    connection = jsoc.JSOCConnection()
    answer = connection.exp_request(
        ds=planned.plan.record_set,
        process=planned.plan.process(planned.t_start, planned.t_stop),
        notify="test@example.org",
        method="url",
        protocol="FITS",
        filenamefmt=planned.plan.filenamefmt,
        sizeratio="1",
        requestor="test",
    )
    finished = connection.wait_for_export(answer["requestid"], poll_interval=(0.2,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        files = retrieve.fetch_export(
            finished, connection.export_urls(finished), lambda name: tmp_path / name, progress=False
        )
    assert not files.errors
    assert len(files) == 1
    return planned.plan, list(files)


def test_export_through_the_offline_jsoc_passes(jsoc_env, tmp_path):
    planned, paths = export_and_download(tmp_path)
    assert verify.check_cutouts(paths, verify.expectation_from_plan(planned)) == []


def test_unprocessed_full_disk_export_is_caught(jsoc_env, tmp_path):
    jsoc_env.ignore_process = True  # JSOC ignoring a bad processing argument, as drms warns
    planned, paths = export_and_download(tmp_path)
    ((path, reason),) = verify.check_cutouts(paths, verify.expectation_from_plan(planned))
    assert path == paths[0]
    assert reason.startswith("JSOC did not apply im_patch")
    assert "4096x4096 full-disk frame" in reason
