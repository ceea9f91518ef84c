"""
Proof after download that JSOC made the cutouts that were asked for.

JSOC returns unprocessed images, without any error, when a processing argument is wrong
(the drms documentation says so). So every exported FITS file is checked against the export
plan before it is handed to the user: `expectation_from_plan` reduces the plan to what a
file must show, `check_cutout` checks one file and `check_cutouts` a whole export, giving the
reason for each file that fails.

The checks follow JSOC's ``im_patch`` (``proj/util/apps/im_patch.c``; jsoc-api.md 1.5):

- the FITS file is sound: CHECKSUM/DATASUM verified where present
  (`sunpy_jsoc_cutout.retrieve.verify_fits`);
- im_patch made it: ``CONTENT`` is ``"Tracked Extracted Patches, made by im_patch"`` and the
  ``HG*`` keywords that record the request are present and agree with the plan;
- the array is the box in pixels, with im_patch's rounding;
- the box is where it was asked: a tracked box's centre is within `CENTRE_TOLERANCE` pixels
  of the requested point carried at the rigid Carrington rate from ``t_ref`` to the frame's
  ``T_OBS``; an untracked box stays on the reference image's CCD pixels;
- ``CROTA2`` is 0 when registered, ``CDELT1`` is 0.6 arcsec when scaled to AIA level 1.5;
- off-limb pixels, and only those, are NaN when cropped.

Every frame conversion goes through `sunpy.coordinates`. Apart from reading the files, all of
this is pure computation.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from sunpy.coordinates import HeliographicCarrington, HeliographicStonyhurst, Helioprojective

from sunpy_jsoc_cutout.geometry import AIA_SCALED_PLATE_SCALE, DETECTOR_PIXELS
from sunpy_jsoc_cutout.plan import ImPatch, parse_drms_time
from sunpy_jsoc_cutout.retrieve import verify_fits

__all__ = [
    "CENTRE_TOLERANCE",
    "CONTENT",
    "CROTA_TOLERANCE",
    "DEGREE_BOX_TOLERANCE",
    "LIMB_MARGIN",
    "PLATE_SCALE_SPREAD",
    "UNTRACKED_TOLERANCE",
    "Expectation",
    "check_cutout",
    "check_cutouts",
    "check_image",
    "expectation_from_plan",
]

#: The ``CONTENT`` im_patch writes into every cutout.
CONTENT = "Tracked Extracted Patches, made by im_patch"
# Keywords im_patch sets on every output record (HGCRLN/HGCRLT are NaN, and may be left out of
# the FITS file, when the box centre is off the disk, which only an untracked box may be).
_REQUEST_KEYWORDS = ("HGBOXUNITS", "HGLOCUNITS", "HGWIDE", "HGHIGH")
_TARGET_KEYWORDS = ("HGCRLN", "HGCRLT")
#: Pixels a tracked box's centre may lie from the requested point. im_patch rounds the lower-left
#: corner to a whole pixel and the array centre of an even-sized box sits half a pixel off its
#: target, so each axis may be up to 1 pixel off (sqrt(2) in all); the rest is the difference
#: between im_patch's spherical geometry and sunpy's (SDO against Earth's centre, the
#: finite-distance approximation of sphere2img), well under a tenth of a pixel.
CENTRE_TOLERANCE = 1.5
#: Pixels an untracked box's centre may lie from the requested helioprojective point. Such a box
#: stays on the CCD pixels it had in the reference image, which may be another channel: AIA's
#: channels differ by a few pixels in CRPIX, by up to 0.1 degree in CROTA2 and by 0.2 per cent in
#: plate scale, a few pixels each at 1000 arcsec from the disk centre.
UNTRACKED_TOLERANCE = 10.0
#: Degrees within which CROTA2 must be 0 in a registered cutout.
CROTA_TOLERANCE = 1e-3
#: Relative spread of the plate scales of the images of one export. im_patch fixes an arcsec
#: box's size from the first image processed, which may be another channel than the file at
#: hand (AIA's EUV channels span 0.5995 to 0.6008 arcsec per pixel, 0.21 per cent).
PLATE_SCALE_SPREAD = 0.0025
#: Pixels a box given in heliographic degrees may differ from the size computed here. im_patch
#: projects the box at the central meridian of the first image with a fixed 1-AU
#: finite-distance correction and truncates; this file may be hours later (B0 and distance
#: change the size by far less than a pixel) and another channel (plate scale, see above).
DEGREE_BOX_TOLERANCE = 2
#: Pixels either side of the limb left out of the crop check: im_patch blanks r^2 >= 0.9995
#: Rsun^2 (0.4 pixel inside the limb), with the first image's CDELT1, and registration
#: interpolates across the edge by about a pixel.
LIMB_MARGIN = 2.0
# Share of on-disk pixels that may be NaN in a cropped cutout: level-1 frames may miss a few
# pixels of their own; a crop at the wrong radius blanks a whole ring.
_ON_DISK_NAN_SHARE = 0.01
# aia_scale resamples to this plate scale (arcsec per pixel), jsoc-api.md section 2.
_SCALED_CDELT = AIA_SCALED_PLATE_SCALE.to_value(u.arcsec / u.pix)
_SCALED_CDELT_TOLERANCE = 1e-5  # AIA level-1 plate scales are within 2e-4 of 0.6


@dataclass(frozen=True)
class Expectation:
    """
    What every file of one export must show: the im_patch arguments that were sent.

    Parameters
    ----------
    series : str
        The series exported.
    impatch : `~sunpy_jsoc_cutout.plan.ImPatch`
        The im_patch arguments; the plan stores its numbers as the process string sends them.
    scale : bool
        Whether aia_scale was asked to bring the images to AIA level 1.5 (0.6 arcsec per pixel).
    """

    series: str
    impatch: ImPatch
    scale: bool = False


def expectation_from_plan(plan):
    """
    The expectation for the files of one export.

    Parameters
    ----------
    plan : `~sunpy_jsoc_cutout.plan.ExportPlan`

    Returns
    -------
    Expectation
    """
    return Expectation(plan.series.name, plan.impatch, plan.aia_scale is not None)


def check_cutout(path, expectation, *, checksum=True):
    """
    Check one downloaded file against the plan.

    Parameters
    ----------
    path : str or `pathlib.Path`
        A FITS file of the export.
    expectation : Expectation
    checksum : bool, optional
        Verify CHECKSUM/DATASUM with `sunpy_jsoc_cutout.retrieve.verify_fits` first. A caller
        that has just done so may pass False.

    Returns
    -------
    str or None
        None when the file is the cutout that was asked for, else the reason it is not.
    """
    if checksum:
        reason = verify_fits(Path(path))
        if reason:
            return f"the FITS file is damaged: {reason}"
    try:
        header, data = _read_image(path)
    except Exception as exc:  # astropy raises a variety of errors for a broken file
        return f"the FITS file cannot be read ({type(exc).__name__}: {exc})"
    if header is None:
        return "the FITS file holds no 2-D image"
    return "; ".join(check_image(header, data, expectation)) or None


def check_cutouts(paths, expectation, *, checksum=True):
    """
    Check every file of an export against the plan.

    Parameters
    ----------
    paths : iterable of str or `pathlib.Path`
        The FITS files of one export (e.g. a `parfive.Results`).
    expectation : Expectation
    checksum : bool, optional
        See `check_cutout`.

    Returns
    -------
    list of (str, str)
        ``(path, reason)`` for every file that is not the cutout asked for; empty when all are.
    """
    failures = []
    for path in paths:
        reason = check_cutout(path, expectation, checksum=checksum)
        if reason:
            failures.append((str(path), reason))
    return failures


def check_image(header, data, expectation):
    """
    Check a cutout's header and data against the plan (pure; no I/O).

    Parameters
    ----------
    header : `astropy.io.fits.Header` or dict
        The image's keywords.
    data : `numpy.ndarray`
        The image, ``data[row, col]`` in FITS order.
    expectation : Expectation

    Returns
    -------
    list of str
        The reasons the image is not the cutout asked for; empty when it is.
    """
    header = header if isinstance(header, fits.Header) else _as_header(header)
    content = header.get("CONTENT")
    if content is None or str(content).strip() != CONTENT:
        found = "has no CONTENT keyword" if content is None else f"has CONTENT {str(content).strip()!r}"
        ny, nx = data.shape
        frame = (
            f", and the image is a {nx}x{ny} full-disk frame"
            if max(nx, ny) >= DETECTOR_PIXELS
            else f" (image {nx}x{ny})"
        )
        return [
            f"JSOC did not apply im_patch: the file {found}, where im_patch writes {CONTENT!r}{frame}; "
            "JSOC returns unprocessed images when a processing argument is wrong"
        ]

    patch = expectation.impatch
    problems = _request_keywords(header, patch)
    problems += _box_size(header, data, patch)
    if patch.register:
        crota = float(header.get("CROTA2", 0.0))
        if abs(crota) > CROTA_TOLERANCE:
            problems.append(
                f"CROTA2 is {crota:.4f} deg, but a registered cutout has CROTA2 = 0 (within "
                f"{CROTA_TOLERANCE:g} deg): JSOC did not register it"
            )
    if expectation.scale:
        for key in ("CDELT1", "CDELT2"):
            cdelt = float(header.get(key, math.nan))
            if not abs(cdelt - _SCALED_CDELT) <= _SCALED_CDELT_TOLERANCE:
                problems.append(
                    f"{key} is {cdelt:g} arcsec, but aia_scale brings images to {_SCALED_CDELT} arcsec "
                    "per pixel: JSOC did not scale it to level 1.5"
                )
    if not problems:
        # Geometry only makes sense for a box of the right kind.
        problems += _centre(header, data, patch)
    if patch.crop:
        problems += _crop(header, data)
    return problems


def _read_image(path):
    """Header and data of the first 2-D image HDU (tile-compressed ones decompressed)."""
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if hdu.is_image and hdu.header.get("NAXIS") == 2:
                return hdu.header.copy(), np.asarray(hdu.data, dtype=float)
    return None, None


def _as_header(mapping):
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        for key, value in mapping.items():
            if key.upper() in ("HISTORY", "COMMENT"):
                continue
            header[key] = value
    return header


def _close(value, wanted):
    # HGWIDE etc. are single-precision floats of the 3-decimal numbers sent.
    return value is not None and abs(float(value) - wanted) <= 2e-3 + 1e-6 * abs(wanted)


def _request_keywords(header, patch):
    """The HG* keywords exist and record the request that was sent."""
    wanted = list(_REQUEST_KEYWORDS)
    if patch.tracking:
        wanted += _TARGET_KEYWORDS
    missing = [key for key in wanted if key not in header]
    if missing:
        return [f"im_patch's keywords {', '.join(missing)} are missing"]
    problems = []
    for key, sent in (("HGLOCUNITS", patch.locunits), ("HGBOXUNITS", patch.boxunits)):
        if str(header[key]).strip().lower() != sent.lower():
            problems.append(f"{key} is {str(header[key]).strip()!r}, but {sent!r} was sent")
    for key, sent in (("HGWIDE", patch.width), ("HGHIGH", patch.height)):
        try:
            ok = _close(header[key], sent)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"{key} is {header[key]!r}, but {sent:g} was sent")
    return problems


def _c_round(value):
    # C's round(): halves away from zero.
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _box_size(header, data, patch):
    """The array is the box in pixels, with im_patch's rounding."""
    ny, nx = data.shape
    cdelt = float(header.get("CDELT1", math.nan))
    allowed = []
    for size in (patch.width, patch.height):
        if patch.boxunits.startswith("pix"):
            allowed.append((_c_round(size), _c_round(size)))
        elif patch.boxunits.startswith("arcsec"):
            # (int)(1 + width/CDELT1) with the first image's CDELT1, within the plate-scale spread.
            low = int(1 + size / (cdelt * (1 + PLATE_SCALE_SPREAD)))
            high = int(1 + size / (cdelt * (1 - PLATE_SCALE_SPREAD)))
            allowed.append((low, high))
        else:
            allowed.append(None)
    if patch.boxunits.startswith("deg"):
        allowed = _degree_box(header, patch)
    problems = []
    for axis, got, span in (("width", nx, allowed[0]), ("height", ny, allowed[1])):
        if span is None:
            continue
        low, high = span
        if not low <= got <= high:
            size = patch.width if axis == "width" else patch.height
            want = f"{low}" if low == high else f"{low} to {high}"
            problems.append(
                f"the {axis} is {got} pixels, but a box of {size:g} {patch.boxunits} is {want} "
                "pixels after im_patch's rounding"
            )
    return problems


def _degree_corners(header, patch):
    """
    The upper-right and lower-left corners of a box in heliographic degrees as im_patch
    places them: at the central meridian, at the box's latitude (im_patch's ``sphere2img``
    relative to the disk centre). Returns ``(tx, ty)`` in arcsec from the disk centre, each
    ``[upper right, lower left]``, or None when the header or target do not allow it.
    """
    observer, obstime, rsun = _observer(header)
    lat = _target_latitude(header, patch)
    if observer is None or lat is None:
        return None
    half_w, half_h = patch.width / 2, patch.height / 2
    corners = SkyCoord(
        (observer.lon.to_value(u.deg) + np.array([half_w, -half_w])) * u.deg,
        (lat + np.array([half_h, -half_h])) * u.deg,
        frame=HeliographicStonyhurst(obstime=obstime, rsun=rsun),
    ).transform_to(Helioprojective(observer=observer, obstime=obstime, rsun=rsun))
    return corners.Tx.to_value(u.arcsec), corners.Ty.to_value(u.arcsec)


def _degree_box(header, patch):
    """Size of a box in heliographic degrees, im_patch's ``(int)(ur - ll) + 1`` pixels."""
    corners = _degree_corners(header, patch)
    if corners is None:
        return [None, None]
    cdelt = float(header["CDELT1"])
    spans = []
    for angle in corners:
        pixels = int(abs(float(angle[0] - angle[1])) / cdelt) + 1
        spans.append((max(1, pixels - DEGREE_BOX_TOLERANCE), pixels + DEGREE_BOX_TOLERANCE))
    return spans


def _degree_offset(header, patch):
    """
    Where im_patch puts the middle of a box in degrees, relative to its target, in arcsec.

    im_patch adds the lower-left corner of the box, projected relative to the DISK centre, to
    the target's pixel position (``x1 = round(target + llx)``), so a box in degrees is
    displaced from its target by the mean of its corners: along y by about
    Rsun sin(latitude - B0). That is JSOC's geometry; the check follows it. The displacement
    is the same in the turned HMI images, where both corners swap. Registration shifts the
    target onto the array centre, displacement and all.
    """
    if patch.register or not patch.boxunits.lower().startswith("deg"):
        return 0.0, 0.0
    corners = _degree_corners(header, patch)
    if corners is None:
        return 0.0, 0.0
    return tuple(float(angle.mean()) for angle in corners)


def _target_latitude(header, patch):
    target = _requested_carrington(patch, _rsun_ref(header))
    if target is not None:
        return target[1]
    value = header.get("HGCRLT")
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _rsun_ref(header):
    return float(header.get("RSUN_REF", 6.96e8))


def _observer(header):
    """The observer (Stonyhurst), the frame's time (T_OBS) and the solar radius of a header."""
    rsun = _rsun_ref(header) * u.m
    try:
        obstime = parse_drms_time(header.get("T_OBS") or header.get("DATE-OBS"))
        lon = float(header.get("HGLN_OBS", 0.0))
        lat = float(header.get("HGLT_OBS", header.get("CRLT_OBS")))
        dsun = float(header["DSUN_OBS"])
    except (KeyError, TypeError, ValueError):
        return None, None, rsun
    observer = SkyCoord(lon * u.deg, lat * u.deg, dsun * u.m, frame=HeliographicStonyhurst(obstime=obstime))
    return observer.frame, obstime, rsun


@functools.lru_cache(maxsize=64)
def _requested_carrington(patch, rsun_ref):
    """
    The requested centre as a fixed Carrington longitude and latitude (degrees), or None.

    im_patch turns the centre into Carrington coordinates on the reference image (SDO's view
    at t_ref; Earth's centre stands in for SDO, a fraction of an arcsecond away) and tracks
    that point at the rigid Carrington rate. ``pixels`` refer to the reference image, which
    is not part of the export, so they give None; so does a point off the disk.
    """
    rsun = rsun_ref * u.m
    t_ref = Time(patch.t_ref, scale="utc")
    carrington = HeliographicCarrington(observer="earth", obstime=t_ref, rsun=rsun)
    units = patch.locunits.lower()
    if units.startswith("carr"):
        return patch.x, patch.y
    if units.startswith("arcsec"):
        frame = Helioprojective(observer="earth", obstime=t_ref, rsun=rsun)
        point = SkyCoord(patch.x * u.arcsec, patch.y * u.arcsec, frame=frame)
    elif units.startswith("stony"):
        frame = HeliographicStonyhurst(obstime=t_ref, rsun=rsun)
        point = SkyCoord(patch.x * u.deg, patch.y * u.deg, frame=frame)
    else:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sunpy warns about points off the disk; NaN says it
        point = point.transform_to(carrington)
    lon, lat = float(point.lon.to_value(u.deg)), float(point.lat.to_value(u.deg))
    return (lon, lat) if math.isfinite(lon) and math.isfinite(lat) else None


def _centre(header, data, patch):
    """The box is centred where it was asked."""
    import sunpy.map

    ny, nx = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sunpy's metadata notes are not this check's business
        cutout = sunpy.map.Map((data, header))
    observer, obstime, rsun = _observer(header)
    middle = ((nx - 1) / 2, (ny - 1) / 2)
    cdelt = float(header["CDELT1"])
    units = patch.locunits.lower()

    if patch.tracking:
        target = _requested_carrington(patch, rsun.to_value(u.m))
        what = "the requested point"
        if target is None:
            if not units.startswith("pix"):
                where = f"({patch.x:g}, {patch.y:g}) {units}"
                return [f"the requested centre {where} is off the disk, so no tracked box can follow it"]
            # Pixels refer to the reference image, which the export does not hold: check the
            # tracking against the Carrington point im_patch found there (HGCRLN/HGCRLT).
            target = (float(header["HGCRLN"]), float(header["HGCRLT"]))
            what = "im_patch's target (HGCRLN, HGCRLT)"
        if observer is None:
            return ["the header lacks T_OBS, DSUN_OBS or HGLT_OBS, so the tracked centre cannot be checked"]
        point = SkyCoord(
            target[0] * u.deg,
            target[1] * u.deg,
            frame=HeliographicCarrington(observer=observer, obstime=obstime, rsun=rsun),
        )
        offset = _degree_offset(header, patch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seen = point.transform_to(cutout.coordinate_frame)
            if offset != (0.0, 0.0):
                seen = SkyCoord(
                    seen.Tx + offset[0] * u.arcsec, seen.Ty + offset[1] * u.arcsec, frame=seen.frame
                )
            col, row = cutout.wcs.world_to_pixel(seen)
        off = math.hypot(float(col) - middle[0], float(row) - middle[1])
        if not off <= CENTRE_TOLERANCE:
            return [
                f"the cutout is centred {off:.1f} pixels from {what} at T_OBS {header.get('T_OBS')} "
                f"(tracked at the Carrington rate from t_ref {patch.t_ref}); at most "
                f"{CENTRE_TOLERANCE:g} pixels are allowed"
            ]
        return []

    # Untracked: the box stays on the reference image's CCD pixels. Pixels and Carrington
    # positions (the latter an error the plan refuses) need the reference image: not checked.
    if units.startswith("arcsec"):
        wanted = (patch.x, patch.y)
    elif units.startswith("stony") and observer is not None:
        point = SkyCoord(
            patch.x * u.deg,
            patch.y * u.deg,
            frame=HeliographicStonyhurst(obstime=Time(patch.t_ref, scale="utc"), rsun=rsun),
        )
        seen = point.transform_to(Helioprojective(observer="earth", obstime=point.obstime, rsun=rsun))
        wanted = (float(seen.Tx.to_value(u.arcsec)), float(seen.Ty.to_value(u.arcsec)))
    else:
        return []
    offset = _degree_offset(header, patch)
    wanted = (wanted[0] + offset[0], wanted[1] + offset[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = cutout.wcs.pixel_to_world(*middle)
    got = (float(world.Tx.to_value(u.arcsec)), float(world.Ty.to_value(u.arcsec)))
    off = math.hypot(got[0] - wanted[0], got[1] - wanted[1]) / cdelt
    if not off <= UNTRACKED_TOLERANCE:
        return [
            f"the untracked cutout is centred at ({got[0]:.1f}, {got[1]:.1f}) arcsec, {off:.1f} pixels from "
            f"the requested ({wanted[0]:.1f}, {wanted[1]:.1f}) arcsec; at most {UNTRACKED_TOLERANCE:g} "
            "pixels are allowed"
        ]
    return []


def _crop(header, data):
    """Off-limb pixels, and only those, are NaN (im_patch's crop, r^2 >= 0.9995 Rsun^2)."""
    try:
        rsun_arcsec = math.degrees(math.asin(_rsun_ref(header) / float(header["DSUN_OBS"]))) * 3600
        radius = rsun_arcsec / float(header["CDELT1"])
        x0, y0 = float(header["CRPIX1"]) - 1, float(header["CRPIX2"]) - 1
    except (KeyError, TypeError, ValueError):
        return ["the header lacks DSUN_OBS, CDELT1 or CRPIX, so the crop cannot be checked"]
    rows, cols = np.ogrid[: data.shape[0], : data.shape[1]]
    r = np.hypot(cols - x0, rows - y0)
    finite = np.isfinite(data)
    problems = []
    off_limb = r > radius + LIMB_MARGIN
    bright, total = int(np.count_nonzero(finite & off_limb)), int(np.count_nonzero(off_limb))
    if bright:
        problems.append(f"{bright} of {total} pixels off the limb are not NaN: JSOC did not crop it")
    on_disk = r < radius - LIMB_MARGIN
    blank, total = int(np.count_nonzero(~finite & on_disk)), int(np.count_nonzero(on_disk))
    if blank > _ON_DISK_NAN_SHARE * max(1, total):
        problems.append(f"{blank} of {total} pixels on the disk are NaN: the crop is not at the limb")
    return problems
