"""
JSOC's export processing, done offline: the ``im_patch`` cut-out module.

`run` takes the records of an export and its ``process`` string (``n=0|im_patch,...``) and
returns one `Product` (header + float32 array) per output record, following the geometry of
JSOC's ``proj/util/apps/im_patch.c``:

- the reference image is the QUALITY >= 0 record whose T_OBS is nearest ``t_ref``, searched in
  windows of +-15 s doubling up to +-2 h 8 min around ``t_ref``;
- the box centre is turned into a Carrington longitude/latitude on the reference image and,
  with tracking on (``t=0``, the default), put back on every frame at the rigid Carrington rate;
  with ``t=1`` it stays on the reference pixel position;
- the box size in pixels is fixed by the first processed image: ``round(width)`` for pixels,
  ``int(1 + width/CDELT1)`` for arcsec;
- the lower-left pixel of the cut is ``round(centre - size/2)`` (0-based), so the output
  ``CRPIX = CRPIX_in - x1``; parts outside the CCD are NaN;
- ``c=1`` sets pixels with r^2 >= 0.9995 Rsun^2 to NaN, an image with CROTA2 near 180 (HMI) is
  turned by 180 degrees, and ``r=1`` resamples the patch so that the target sits on the array
  centre with solar north up (CROTA2 = 0).

Pixel values come from the procedural Sun in `sunpy_jsoc_cutout.testing.sun`. Everything here is
pure computation; errors JSOC would report raise `ProcessingError` with JSOC's message.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.time import Time, TimeDelta

from sunpy_jsoc_cutout.testing import sun

__all__ = [
    "AIA_SCALE_STEPS",
    "AIA_SCALE_TO",
    "REGISTER_PADDING",
    "ProcessingError",
    "Product",
    "parse_cadence",
    "parse_drms_time",
    "parse_process",
    "run",
]

#: Extra pixels cut on each side before registration, trimmed afterwards (im_patch.c of 2022: 60).
REGISTER_PADDING = 60
#: The aia_scale steps (web form: aia_scale_orig, aia_scale_aialev1 or aia_scale_other by series).
AIA_SCALE_STEPS = ("aia_scale_aialev1", "aia_scale_orig", "aia_scale_other")
#: The plate scale aia_scale resamples to, arcsec per pixel.
AIA_SCALE_TO = 0.6
_SUPPORTED_LATER = ("resize", "rebin", "maproj", "hmib2ptr")
# JSOC's "special" series whose slots are not filled: im_patch picks records per cadence itself.
_SPARSE_PREFIXES = ("aia.lev1[", "hmi.lev1[", "aia.lev1_nrt2[", "hmi.lev1_nrt[")
# What DRMS prints for a time keyword holding "no time" (JD_0).
_MISSING_TIME = "-4712.01.01_11:59:28_TAI"
_ARCSEC = math.pi / (180.0 * 3600.0)


class ProcessingError(Exception):
    """An export step failed the way JSOC reports it (the message is JSOC's)."""


@dataclass
class Product:
    """
    One output record of an export.

    Attributes
    ----------
    record : `~sunpy_jsoc_cutout.testing.catalog.Record`
        The input record.
    header : dict
        Output FITS keywords, upper case; ``HISTORY`` and ``COMMENT`` are lists of strings.
    data : `numpy.ndarray`
        float32 image, ``data[row, col]`` with row 0 at the bottom (FITS order).
    processed : bool
        True when a processing step made this product (its series is ``<series>_mod``).
    """

    record: Any
    header: dict
    data: np.ndarray
    processed: bool = field(default=True)

    @property
    def series_name(self) -> str:
        """The output series: ``<input series>_mod`` for processed products."""
        name = self.record.series.name
        return f"{name}_mod" if self.processed else name

    @property
    def spec(self) -> str:
        """The output record spec, e.g. ``aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z][171]``."""
        name = self.record.series.name
        try:
            spec = self.record.spec
        except (AttributeError, NotImplementedError):
            spec = f"{name}[:#{self.record.recnum}]"
        return self.series_name + spec[len(name) :] if spec.startswith(name) else spec


# --------------------------------------------------------------------------------------------
# Parsing.


def parse_process(process: str) -> list[tuple[str, dict[str, str]]]:
    """
    Split an export ``process`` string into its steps.

    Parameters
    ----------
    process : str
        e.g. ``"n=0|im_patch,t_ref=2014-02-05T08:00:00,t=0,...|aia_scale_aialev1"``.

    Returns
    -------
    list of (str, dict)
        ``[("im_patch", {"t_ref": ..., "t": "0", ...}), ("aia_scale_aialev1", {})]``. The
        record limit ``n=..`` and ``no_op`` are dropped. A bare argument (``c``) is a set flag.
    """
    steps: list[tuple[str, dict[str, str]]] = []
    for raw in (process or "").split("|"):
        part = raw.strip()
        if not part or re.fullmatch(r"n=-?\d*", part) or part == "no_op":
            continue
        name, _, rest = part.partition(",")
        args: dict[str, str] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            args[key.strip().lstrip("-")] = value.strip() if eq else "1"
        steps.append((name.strip(), args))
    return steps


_DRMS_TIME = re.compile(
    r"^(\d{4})\.(\d{1,2})\.(\d{1,2})(?:_(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?)?(?:_([A-Za-z]+)|(Z))?$"
)


def parse_drms_time(value: str | None) -> Time | None:
    """
    Read a time as DRMS does; no zone means UTC.

    Parameters
    ----------
    value : str or None
        ``2014.02.05_08:00:00_TAI``, ``2014.02.05_08:00_UTC``, ``2014.02.05``,
        ``2014-02-05T08:00:00.000``, ``2014-02-05T08:00:00Z`` ...; ``None``, ``""``,
        ``NotSpecified`` and ``JD_0`` mean "not given".

    Returns
    -------
    `~astropy.time.Time` or None

    Raises
    ------
    ProcessingError
        If the text is not a time.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in ("notspecified", "jd_0", "not specified"):
        return None
    m = _DRMS_TIME.match(text)
    if m:
        year, month, day, hh, mm, ss, zone, z = m.groups()
        zone = zone or z  # DRMS prints one-letter zones without "_": 2014.02.05_00:00:00Z
        iso = f"{year}-{int(month):02d}-{int(day):02d}T{int(hh or 0):02d}:{mm or '00'}:{ss or '00'}"
        zone = (zone or "UTC").upper()
        if zone not in ("UTC", "TAI", "UT", "Z"):
            raise ProcessingError(f"Time zone {zone} of '{text}' is not supported by the offline JSOC")
        return Time(iso, scale="tai" if zone == "TAI" else "utc")
    iso = text.removesuffix("Z").removesuffix("_UTC")
    if iso.endswith("_TAI"):
        return Time(iso.removesuffix("_TAI"), scale="tai")
    try:
        return Time(iso, scale="utc")
    except ValueError:
        raise ProcessingError(f"Can not parse time '{text}'") from None


def parse_cadence(value: str | None) -> float:
    """
    Seconds in a cadence as DRMS ``atoinc`` reads it: ``12s``, ``1m``, ``1h``, ``1d``.

    A number without a unit reads as 0 (no cadence), as in JSOC.
    """
    if value is None:
        return 0.0
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\w*\s*", str(value))
    if not m:
        return 0.0
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _c_round(v: float) -> int:
    # C's round(): halves away from zero.
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def _flag(args: dict[str, str], name: str) -> bool:
    # cmdparams reads "t=0" as "flag not set" and "t=1" as set.
    value = args.get(name)
    if value is None:
        return False
    try:
        return int(float(value)) != 0
    except ValueError:
        return value.strip().lower() in ("true", "yes", "y")


def _number(args: dict[str, str], name: str, default: float) -> float:
    value = args.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ProcessingError(f"im_patch: bad value for {name}: '{value}'") from None


def _quality(record) -> int:
    try:
        text = record.keyword("QUALITY")
    except (AttributeError, KeyError, NotImplementedError, ValueError):
        return 0
    try:
        q = int(str(text), 0)
    except ValueError:
        return 0
    return q - (1 << 32) if q >= (1 << 31) else q


# --------------------------------------------------------------------------------------------
# im_patch.


@dataclass
class _Request:
    loctype: str
    boxtype: str
    locunits: str
    boxunits: str
    x: float
    y: float
    width: float
    height: float
    car_rot: int
    t_ref: Time | None
    t_start: Time | None
    t_stop: Time | None
    cadence: str | None
    track: bool
    register: bool
    crop: bool


def _read_request(args: dict[str, str]) -> _Request:
    locunits = args.get("locunits", "NOTSPECIFIED")
    boxunits = args.get("boxunits", "NOTSPECIFIED")
    lo, bo = locunits.lower(), boxunits.lower()
    loctype = (
        "arcsec"
        if lo.startswith("arcsec")
        else "pixels"
        if lo.startswith("pix")
        else "stony"
        if lo.startswith("stony")
        else "carrlong"
        if lo.startswith("carr")
        else "bad"
    )
    boxtype = (
        "arcsec"
        if bo.startswith("arcsec")
        else "pixels"
        if bo.startswith("pix")
        else "degrees"
        if bo.startswith("deg")
        else "bad"
    )
    if boxtype == "bad":
        # im_patch.c sets loctype (not boxtype) here, so it reports the location units.
        loctype = "bad"
    car_rot = int(_number(args, "car_rot", -1))
    t_ref = parse_drms_time(args.get("t_ref"))
    # The checks in im_patch's order: car_rot / t_ref first, then the units.
    if loctype == "carrlong":
        if car_rot < 0:
            raise ProcessingError("Carrington rotation number must be provided for locunits=carrlong")
    elif t_ref is None:
        raise ProcessingError("t_ref must be provided for locunits!=carrlong")
    if loctype == "bad":
        raise ProcessingError(f"Location units not detected, locunits {locunits}")
    return _Request(
        loctype=loctype,
        boxtype=boxtype,
        locunits=locunits,
        boxunits=boxunits,
        x=_number(args, "x", 0.0),
        y=_number(args, "y", 0.0),
        width=_number(args, "width", 0.0),
        height=_number(args, "height", 0.0),
        car_rot=car_rot,
        t_ref=t_ref,
        t_start=parse_drms_time(args.get("t_start")),
        t_stop=parse_drms_time(args.get("t_stop")),
        cadence=args.get("cadence"),
        track=not _flag(args, "t"),
        register=_flag(args, "r"),
        crop=_flag(args, "c"),
    )


def _split_ds(ds: str) -> tuple[str, str, bool]:
    """(series, query after the time filter, whether the spec has its own time filter)."""
    ds = ds.strip()
    cut = min((i for i in (ds.find("["), ds.find("{")) if i >= 0), default=len(ds))
    series, rest = ds[:cut].strip(), ds[cut:]
    if rest.startswith("[$]"):
        return series, rest[3:], False
    if rest.startswith("["):
        close = rest.find("]")
        return series, rest[close + 1 :] if close >= 0 else "", True
    return series, rest, False


def _second_key_filter(records: Sequence) -> str:
    """The ``[171,193]``-style filter of the records' second prime key (channel or camera)."""
    for attr in ("wavelength", "camera"):
        values = sorted({getattr(r, attr, None) for r in records} - {None})
        if values:
            return "[" + ",".join(str(v) for v in values) + "]"
    return ""


def _heliographic_time(car_rot: int, lon: float) -> Time:
    # When Carrington longitude `lon` crosses the central meridian during rotation `car_rot`.
    from sunpy.coordinates import sun as sunpy_sun

    return Time(sunpy_sun.carrington_rotation_time(car_rot + (360.0 - lon) / 360.0))


def _find_reference(series: str, t_ref: Time, more: str, lookup: Callable, where: str = ""):
    width = 15.0
    query = ""
    while width < 10000:
        lo = sun.format_tai(t_ref - TimeDelta(width, format="sec"))
        hi = sun.format_tai(t_ref + TimeDelta(width, format="sec"))
        query = f"{series}[{lo}-{hi}][? QUALITY >= 0 ?]{more}{where}"
        try:
            found, _ = lookup(query)
        except Exception:  # an empty or refused window just widens the search
            found = []
        best, best_diff = None, None
        for rec in found:
            if _quality(rec) < 0:
                continue
            diff = abs((Time(rec.t_obs) - t_ref).sec)
            # im_patch walks the records in order and stops when the difference grows.
            if best_diff is not None and diff > best_diff:
                break
            best, best_diff = rec, diff
        if best is not None:
            return best
        width *= 2
    raise ProcessingError(f"No input data found within 2-hours of t_ref {query}")


def _sphere2img(lat: float, lon: float, latc: float, rsun: float, pa: float) -> tuple[float, float]:
    # im_patch's sphere2img (Bogart's cartography.c) with lonc = 0 and centre (0, 0): plate position
    # relative to the disk centre, with its fixed 1 AU perspective correction. Angles in radians.
    sin_asd, cos_asd = 0.004660, 0.99998914
    cos_lat_lon = math.cos(lat) * math.cos(lon)
    cos_cang = math.sin(lat) * math.sin(latc) + math.cos(latc) * cos_lat_lon
    r = rsun * cos_asd / (1.0 - cos_cang * sin_asd)
    xr = r * math.cos(lat) * math.sin(lon)
    yr = r * (math.sin(lat) * math.cos(latc) - math.sin(latc) * cos_lat_lon)
    return xr * math.cos(pa) - yr * math.sin(pa), xr * math.sin(pa) + yr * math.cos(pa)


def _box_size(req: _Request, header: dict, crlt: float) -> tuple[int, int, float, float]:
    """Box size in pixels and the lower-left offset (llx, lly) that im_patch adds to the box centre."""
    cdelt = float(header["CDELT1"])
    if req.boxtype == "pixels":
        pw, ph = _c_round(req.width), _c_round(req.height)
        llx, lly = -pw / 2.0, -ph / 2.0
    elif req.boxtype == "arcsec":
        llx, lly = -req.width / (2.0 * cdelt), -req.height / (2.0 * cdelt)
        pw, ph = int(1 - 2 * llx), int(1 - 2 * lly)
    else:
        # Degrees, as im_patch.c does it: the corners of the box placed at the central meridian,
        # projected relative to the DISK centre (not the box centre), and that lower-left corner
        # is then added to the tracked box centre. Away from the equator (strictly: from
        # latitude CRLT_OBS) the patch is therefore displaced from the target along y; that is
        # JSOC's behaviour and the offline JSOC keeps it.
        rsun = math.asin(float(header.get("RSUN_REF", sun.RSUN_REF)) / float(header["DSUN_OBS"]))
        rsunpix = rsun / _ARCSEC / cdelt
        latc = math.radians(float(header["CRLT_OBS"]))
        pa = math.radians(-float(header.get("CROTA2", 0.0)))
        urx, ury = _sphere2img(
            math.radians(crlt + req.height / 2), math.radians(req.width / 2), latc, rsunpix, pa
        )
        llx, lly = _sphere2img(
            math.radians(crlt - req.height / 2), -math.radians(req.width / 2), latc, rsunpix, pa
        )
        nx, ny = int(urx - llx), int(ury - lly)  # C's (int) truncates toward zero
        if nx < 0:
            nx, llx = -nx, urx
        if ny < 0:
            ny, lly = -ny, ury
        pw, ph = nx + 1, ny + 1
    if pw < 1 or ph < 1:
        raise ProcessingError(f"im_patch: box of {req.width} x {req.height} {req.boxunits} has no pixels")
    return pw, ph, llx, lly


def _statistics(data: np.ndarray) -> dict[str, Any]:
    good = data[np.isfinite(data)]
    stats: dict[str, Any] = {"DATAVALS": int(good.size), "MISSVALS": int(data.size - good.size)}
    if good.size:
        stats.update(
            {
                "DATAMIN": float(good.min()),
                "DATAMAX": float(good.max()),
                "DATAMEAN": float(good.mean()),
                "DATAMEDN": float(np.median(good)),
                "DATARMS": float(good.std()),
            }
        )
    return stats


def _cut(record, header: dict, corner: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    (x1, y1), (ny, nx) = corner, shape
    out = np.full((ny, nx), np.nan, dtype=np.float32)
    size1, size2 = int(header.get("NAXIS1", sun.IMAGE_SIZE)), int(header.get("NAXIS2", sun.IMAGE_SIZE))
    c0, c1 = max(x1, 0), min(x1 + nx, size1)
    r0, r1 = max(y1, 0), min(y1 + ny, size2)
    if c1 > c0 and r1 > r0:
        out[r0 - y1 : r1 - y1, c0 - x1 : c1 - x1] = sun.render(record, header, slice(r0, r1), slice(c0, c1))
    return out


def _register(
    data: np.ndarray,
    target: tuple[float, float],
    crpix: tuple[float, float],
    crota: float,
    size: tuple[int, int],
) -> tuple[np.ndarray, float, float]:
    """
    Resample a patch so that ``target`` (0-based x, y in the patch) lands on the centre of a
    ``size`` array with solar north up. Returns the array and its CRPIX1/2.
    """
    from scipy import ndimage

    pw, ph = size
    rho = math.radians(crota)
    c, s = math.cos(rho), math.sin(rho)
    u = np.arange(pw) - (pw - 1) / 2.0
    v = np.arange(ph) - (ph - 1) / 2.0
    uu, vv = np.meshgrid(u, v)
    # A north-up offset (u, v) is the patch pixel offset R(-crota) (u, v).
    px = target[0] + c * uu + s * vv
    py = target[1] - s * uu + c * vv
    # Linear interpolation keeps NaN (off-CCD, cropped) from spreading beyond its neighbours.
    out = ndimage.map_coordinates(data.astype(np.float64), [py, px], order=1, mode="constant", cval=np.nan)
    # Where the Sun centre goes: its patch offset from the target, turned north up.
    dx, dy = crpix[0] - 1 - target[0], crpix[1] - 1 - target[1]
    crpix1 = (pw - 1) / 2.0 + (c * dx - s * dy) + 1
    crpix2 = (ph - 1) / 2.0 + (s * dx + c * dy) + 1
    return out.astype(np.float32), crpix1, crpix2


def _ctype_check(header: dict) -> None:
    # im_patch cuts only helioprojective (TAN) images; CEA series such as SHARPs are refused.
    for key, want in (("CTYPE1", "HPLN-TAN"), ("CTYPE2", "HPLT-TAN")):
        value = str(header.get(key, ""))
        if value != want:
            raise ProcessingError(f"{key} not {want} as required, is:  {value}")


def _is_time_first(series_name: str) -> bool:
    from sunpy_jsoc_cutout.testing import catalog

    try:
        series = catalog.get_series(series_name)
    except catalog.RecordSetError:
        return True  # unknown to the catalog: the lookup reports it
    return series.primekeys[0] == series.time_key and series.kind != "noaa"


def _nearest_per_cadence(records: Sequence, cadence: float) -> list:
    """
    im_patch's ``get_input_recset`` for aia.lev1/hmi.lev1: the QUALITY >= 0 record nearest each
    cadence slot, slots counted from the first record's T_REC (same comparisons as the C code).
    """
    if not records:
        return []
    times = np.array([_tai_seconds(r) for r in records])
    t_start, t_stop = times[0], times[-1]
    half = cadence / 2.0
    nslots = int((t_stop - t_start + half) / cadence)
    chosen: list = [None] * max(nslots, 0)
    islot, t_want, t_diff = 0, t_start, 1.0e9
    for rec, t_now in zip(records, times, strict=True):
        this_diff = abs(t_now - t_want)
        if _quality(rec) < 0 or t_now <= t_want - half:
            continue
        while t_now > t_want + half:
            islot += 1
            if islot >= nslots:
                break
            t_want = t_start + cadence * islot
            this_diff = abs(t_now - t_want)
            t_diff = 1.0e8
        if islot < nslots and this_diff <= t_diff:
            chosen[islot] = rec
        t_diff = abs(t_now - t_want)
    return [rec for rec in chosen if rec is not None]


def _tai_seconds(record) -> float:
    value = getattr(record, "tai_seconds", None)
    if value is None:
        t = Time(record.t_rec).tai
        value = (t.jd1 - 2443144.5) * 86400.0 + t.jd2 * 86400.0
    return float(value)


def _sparse_query(in_query: str, cadence: float, lookup: Callable, requestid: str):
    """Apply im_patch's special cadence handling when the query is ``aia.lev1[...@Ns]...``."""
    at = in_query.find("@")
    if cadence <= 1.0 or at < 0 or not in_query.lower().startswith(_SPARSE_PREFIXES):
        return None
    m = re.match(r"(\d+)([smhd])", in_query[at + 1 :])
    if m is None:
        raise ProcessingError("cant make sense of @xx cadence spec")
    step = int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
    plain = in_query[:at] + in_query[at + 1 + m.end() :]
    try:
        found, _ = lookup(plain)
    except Exception as exc:
        raise ProcessingError(f"getkey_vector failed ({exc})") from None
    picked = _nearest_per_cadence(found, float(step))
    # im_patch writes the record list to a temporary file and opens "@<file>".
    return picked, f"@/tmp/im_patch{abs(hash((requestid, plain))) % 10**6:06d}"


def _im_patch(
    records: Sequence,
    args: dict[str, str],
    requestid: str,
    *,
    lookup: Callable | None,
    ds: str | None,
    now: Time | None,
    header_of: Callable[[Any], dict] = sun.full_disk_header,
    scaled: bool = False,
) -> list[Product]:
    req = _read_request(args)
    if lookup is None:
        from sunpy_jsoc_cutout.testing import catalog

        lookup = catalog.query

    if ds:
        series_name, more, has_time_filter = _split_ds(ds)
    elif records:
        series_name, has_time_filter = records[0].series.name, True
        if getattr(records[0].series, "sparse", False):
            waves = sorted({r.wavelength for r in records if getattr(r, "wavelength", None)})
            more = f"[? WAVELNTH in ({','.join(str(w) for w in waves)}) ?]" if waves else ""
        else:
            more = _second_key_filter(records)
    else:
        return []
    where = args.get("where", "NOTSPECIFIED")
    where = "" if where.strip() in ("", "NOTSPECIFIED") else f"[? {where} ?]"

    history_notes: list[str] = []
    fixed_centre: tuple[float, float] | None = None
    car_rot = req.car_rot
    if req.loctype != "carrlong":
        ref = _find_reference(series_name, req.t_ref, more, lookup, where)
        href = header_of(ref)
        _ctype_check(href)
        if req.loctype in ("arcsec", "pixels"):
            if req.loctype == "arcsec":
                # im_patch's linear WCS macros (PIX_X, PIX_Y), first pixel (1, 1), minus 1.
                rho = math.radians(float(href.get("CROTA2", 0.0)))
                c, s = math.cos(rho), math.sin(rho)
                wx, wy = req.x - float(href["CRVAL1"]), req.y - float(href["CRVAL2"])
                cdelt = float(href["CDELT1"])
                cx = (wx * c + wy * s) / cdelt + float(href["CRPIX1"]) - 1
                cy = (wy * c - wx * s) / cdelt + float(href["CRPIX2"]) - 1
            else:
                cx, cy = req.x - 1, req.y - 1
            lon, lat, on = sun.pixel_to_carrington(href, cy, cx)
            crln, crlt = float(lon), float(lat)
            if not bool(on):
                history_notes.append("Starting location is off the solar disk.")
            fixed_centre = (cx, cy)
            car_rot = int(href["CAR_ROT"])
        else:
            crlt = req.y
            crln = float(href["CRLN_OBS"]) + req.x
            col, row, _ = sun.carrington_to_pixel(href, crln, crlt)
            fixed_centre = (float(col), float(row))
            car_rot = int(href["CAR_ROT"])
            if crln >= 360.0:
                car_rot, crln = car_rot - 1, crln - 360.0
            elif crln < 0.0:
                car_rot, crln = car_rot + 1, crln + 360.0
    else:
        crln, crlt = req.x, req.y
        if crln < 0:
            raise ProcessingError("Box longitude must be specified.")
        if crlt < -990:
            raise ProcessingError("box latitude must be specified.")
    on_disk = math.isfinite(crln) and math.isfinite(crlt)
    if not _is_time_first(series_name):
        raise ProcessingError("Input series must have TIME keyword first, for now...")

    t_start, t_stop = req.t_start, req.t_stop
    step = float(getattr(records[0].series, "step", 0) if records else 0) or 1.0
    if not records:
        from sunpy_jsoc_cutout.testing import catalog

        with contextlib.suppress(catalog.RecordSetError):
            step = float(catalog.get_series(series_name).step)
    cadence = parse_cadence(req.cadence) if req.cadence and req.cadence != "NOTSPECIFIED" else step
    if cadence:
        cadence = round(cadence / step) * step
    if has_time_filter:
        # Records as the spec gave them; cadence is ignored in this mode (except for aia.lev1 below).
        in_query = ds or f"{series_name}[{records[0].keyword('T_REC')}-{records[-1].keyword('T_REC')}]"
        todo = list(records)
    else:
        if t_start is None or t_stop is None:
            if not req.track:
                which = "t_start" if t_start is None else "t_stop"
                raise ProcessingError(f"Must have {which} or explicit times for NoTrack")
            if not on_disk:
                raise ProcessingError("Starting location is off the solar disk.")
            t_start = t_start or _heliographic_time(car_rot, crln + 90)
            t_stop = t_stop or _heliographic_time(car_rot, crln - 90)
        at = f"@{cadence:.0f}s" if cadence > step else ""
        in_query = f"{series_name}[{sun.format_tai(t_start)}-{sun.format_tai(t_stop)}{at}]{where}{more}"
        todo = None
    special = _sparse_query(in_query, cadence, lookup, requestid)
    if special is not None:
        todo, in_query = special
    elif todo is None:
        try:
            todo, _ = lookup(in_query)
        except Exception as exc:  # any refusal means no input
            raise ProcessingError(f"No input data found ({exc})") from None
    if not todo:
        raise ProcessingError("No input data found")

    date = (now or Time.now()).utc
    date.precision = 0
    products: list[Product] = []
    box = None
    for record in todo:
        trec = Time(record.t_rec)
        # DRMS compares times as doubles in seconds; allow for Time's rounding (1 ms).
        if t_start is not None and (trec - t_start).sec < -1e-3:
            continue
        if t_stop is not None and (trec - t_stop).sec > 1e-3:
            break
        if _quality(record) < 0:
            continue
        header = header_of(record)
        n1 = int(header.get("NAXIS1", sun.IMAGE_SIZE))
        n2 = int(header.get("NAXIS2", sun.IMAGE_SIZE))
        cdelt = float(header["CDELT1"])
        crota = float(header.get("CROTA2", 0.0))
        x0, y0 = float(header["CRPIX1"]) - 1, float(header["CRPIX2"]) - 1
        if box is None:
            if req.loctype == "carrlong":
                _ctype_check(header)
            box = _box_size(req, header, crlt if on_disk else 0.0)
        pw, ph, llx, lly = box

        if req.track and on_disk:
            col, row, _ = sun.carrington_to_pixel(header, crln, crlt)
            centre = (float(col), float(row))
        else:
            if fixed_centre is None:
                # carrlong without tracking: im_patch has no reference image; use the first frame.
                col, row, _ = sun.carrington_to_pixel(header, crln, crlt)
                fixed_centre = (float(col), float(row))
            centre = fixed_centre

        x1 = _c_round(centre[0] + llx)
        y1 = _c_round(centre[1] + lly)
        x2, y2 = x1 + pw - 1, y1 + ph - 1
        pad = REGISTER_PADDING if req.register else 0
        x1, y1, x2, y2 = x1 - pad, y1 - pad, x2 + pad, y2 + pad
        if x1 >= n1 or y1 >= n2 or x2 < 0 or y2 < 0:
            continue  # entirely off the CCD: no record
        crpix1, crpix2 = 1 + x0 - x1, 1 + y0 - y1
        data = _cut(record, header, (x1, y1), (y2 - y1 + 1, x2 - x1 + 1))
        history: list[str] = list(history_notes)

        if req.crop:
            rsun_ref = float(header.get("RSUN_REF", sun.RSUN_REF))
            rpix = math.asin(rsun_ref / float(header["DSUN_OBS"])) / _ARCSEC / cdelt
            jj, ii = np.ogrid[: data.shape[0], : data.shape[1]]
            off = (ii - (crpix1 - 1)) ** 2 + (jj - (crpix2 - 1)) ** 2 >= 0.9995 * rpix * rpix
            data[off] = np.nan

        target_x, target_y = centre
        if abs(abs(crota) - 180.0) < 1.0:
            data = data[::-1, ::-1].copy()
            crota -= 180.0 if crota > 0 else -180.0
            crpix1, crpix2 = 1 + x2 - x0, 1 + y2 - y0
            x1, y1 = n1 - 1 - x2, n2 - 1 - y2
            target_x, target_y = n1 - 1 - centre[0], n2 - 1 - centre[1]
            history.append("Image rotated 180 degrees.")

        if req.register:
            nx, ny = data.shape[1], data.shape[0]
            dx = (x1 + (nx - 1) / 2.0) - target_x
            dy = (y1 + (ny - 1) / 2.0) - target_y
            data, crpix1, crpix2 = _register(
                data, (target_x - x1, target_y - y1), (crpix1, crpix2), crota, (pw, ph)
            )
            crota = 0.0
            history.append(f"Image registered by shift of ({dx:0.3f},{dy:0.3f}) pixels.")

        out = dict(header)
        source = Product(record, {}, data, processed=scaled).spec
        out.update(
            {
                "NAXIS1": int(data.shape[1]),
                "NAXIS2": int(data.shape[0]),
                "SOURCE": source,
                "T_REC": header["T_REC"],
                "CRPIX1": float(crpix1),
                "CRPIX2": float(crpix2),
                "CRVAL1": 0.0,
                "CRVAL2": 0.0,
                "CRDELT1": cdelt,
                "CRDELT2": cdelt,
                "CROTA2": float(crota),
                "CONTENT": "Tracked Extracted Patches, made by im_patch",
                "REQUESTID": requestid,
                "HGBOXUNITS": req.boxunits,
                "HGLOCUNITS": req.locunits,
                "HGWIDE": req.width,
                "HGHIGH": req.height,
                "HGCARROT": int(car_rot),
                "HGTSTART": sun.format_tai(t_start) if t_start is not None else _MISSING_TIME,
                "HGTSTOP": sun.format_tai(t_stop) if t_stop is not None else _MISSING_TIME,
                "DATE": date.isot + "Z",
                "HGQUERY": in_query,
                # im_patch writes CRLN_OBS back; its -0.0818941 deg correction applies only to
                # records with a CALVER keyword lacking bit 28, which the offline images have not.
                "CRLN_OBS": float(header["CRLN_OBS"]),
            }
        )
        if on_disk:
            out["HGCRLN"], out["HGCRLT"] = crln, crlt
        out.update(_statistics(data))
        out["HISTORY"] = [*header.get("HISTORY", []), source, *history]
        out["COMMENT"] = [*header.get("COMMENT", []), "Patches"]
        products.append(Product(record, out, data.astype(np.float32, copy=False)))
    return products


def _aia_scale_arguments(name: str, args: dict[str, str], series) -> dict[str, float]:
    if series.instrument.upper() != "AIA":
        # aia_lev1p5 scales AIA level-1 images; the offline JSOC refuses everything else.
        raise ProcessingError(
            f"{name}: {series.name} is not an AIA level-1 series; aia_scale scales AIA images "
            f"to {AIA_SCALE_TO} arcsec/pixel (aia.lev1, aia.lev1_euv_12s, aia.lev1_uv_24s, ...)"
        )
    out = {}
    for key, default in (
        ("scale_to", AIA_SCALE_TO),
        ("xc", 0.0),
        ("yc", 0.0),
        ("wide", 4096),
        ("high", 4096),
    ):
        out[key] = _number(args, key, default)
    out["rescale"] = _number(args, "rescale", 1)
    if out["wide"] < 1 or out["high"] < 1:
        raise ProcessingError(f"{name}: wide and high must be positive")
    return out


def _scaled_header(record, scale: dict[str, float], name: str) -> dict:
    """The header aia_lev1p5 writes: 0.6 arcsec/pixel, north up, Sun centre on the array centre."""
    header = dict(sun.full_disk_header(record))
    cdelt1, cdelt2 = float(header["CDELT1"]), float(header["CDELT2"])
    mag = abs(cdelt1 / scale["scale_to"]) if scale["rescale"] else 1.0
    wide, high = int(scale["wide"]), int(scale["high"])
    header.update(
        {
            "NAXIS1": wide,
            "NAXIS2": high,
            "CDELT1": cdelt1 / mag,
            "CDELT2": cdelt2 / mag,
            "R_SUN": float(header.get("R_SUN", 0.0)) * mag,
            "CROTA2": 0.0,
            "CRPIX1": (wide + 1.0) * 0.5 - scale["xc"],
            "CRPIX2": (high + 1.0) * 0.5 - scale["yc"],
            "X0": 0.0,
            "Y0": 0.0,
            "LVL_NUM": 1.5,
        }
    )
    header["HISTORY"] = [
        f"{name}: level 1.5 by aia_lev1p5, rescaled by {mag:.6f} to {cdelt1 / mag:.4f} arcsec/pixel, "
        f"rotated by {sun.full_disk_header(record)['CROTA2']:.4f} deg to solar north, Sun centre on "
        "the array centre."
    ]
    return header


def _aia_scale(records: Sequence, name: str, args: dict[str, str], requestid: str, now) -> list[Product]:
    if not records:
        return []
    scale = _aia_scale_arguments(name, args, records[0].series)
    date = (now or Time.now()).utc
    date.precision = 0
    products = []
    for record in records:
        if _quality(record) < 0:
            continue
        header = _scaled_header(record, scale, name)
        data = sun.render(record, header, slice(0, header["NAXIS2"]), slice(0, header["NAXIS1"]))
        data = np.clip(data, -8.0, 16383.5)  # aia_lev1p5 clips AIA output to this range
        header.update(_statistics(data), DATE=date.isot + "Z", REQUESTID=requestid)
        products.append(Product(record, header, data))
    return products


def _full_disk(records: Sequence) -> list[Product]:
    products = []
    for record in records:
        header = sun.full_disk_header(record)
        data = sun.render(record, header, slice(0, header["NAXIS2"]), slice(0, header["NAXIS1"]))
        products.append(Product(record, header, data, processed=False))
    return products


def run(
    records: Sequence,
    process: str,
    requestid: str,
    *,
    lookup: Callable | None = None,
    ds: str | None = None,
    now: Time | None = None,
) -> list[Product]:
    """
    Apply an export's processing steps to its records, as JSOC would.

    Parameters
    ----------
    records : sequence of `~sunpy_jsoc_cutout.testing.catalog.Record`
        The records of the export's record set, sorted as the record set gives them.
    process : str
        The export ``process`` string, e.g. ``"n=0|im_patch,t_ref=...,x=..,y=.."`` or
        ``"n=0|no_op"``.
    requestid : str
        The export's request ID (written to ``REQUESTID``).
    lookup : callable, optional
        ``lookup(ds) -> (records, segments)``, used to find the reference image around
        ``t_ref`` and, for a spec with no time filter, the records between t_start and t_stop.
        Defaults to `sunpy_jsoc_cutout.testing.catalog.query`.
    ds : str, optional
        The export's record-set string. When given, filters after the time filter (e.g.
        ``[171]``) also restrict the reference search, and ``series`` or ``series[$]`` makes
        im_patch build the record list from t_start/t_stop/cadence as JSOC does.
    now : `~astropy.time.Time`, optional
        The time written to ``DATE`` (default: now).

    Returns
    -------
    list of Product
        One per output record. With no step (``no_op``): the full-disk images (16 M pixels each:
        only for a handful of records).

    Raises
    ------
    ProcessingError
        With JSOC's message for a request im_patch refuses, or for a step the offline JSOC does
        not implement.
    """
    steps = parse_process(process)
    names = [name.lower() for name, _ in steps]
    for name in names:
        if name in _SUPPORTED_LATER:
            raise ProcessingError(f"{name} is not supported by the offline JSOC yet")
        if name != "im_patch" and name not in AIA_SCALE_STEPS:
            raise ProcessingError(f"Processing step '{name}' is not known to JSOC")
    if not steps:
        return _full_disk(records)
    if names.count("im_patch") > 1 or sum(n in AIA_SCALE_STEPS for n in names) > 1:
        raise ProcessingError("each processing step can be given only once in a process string")
    if names[0] == "im_patch" and len(names) > 1:
        # JSOC would scale the cut-outs into mostly empty full frames; the web form never does this.
        raise ProcessingError("the offline JSOC runs aia_scale only before im_patch (the web form's order)")
    records = list(records)
    if names[0] in AIA_SCALE_STEPS:
        name, args = steps[0]
        if len(steps) == 1:
            return _aia_scale(records, name, args, requestid, now)
        series = records[0].series if records else None
        if series is None and ds:
            from sunpy_jsoc_cutout.testing import catalog

            series = catalog.get_series(_split_ds(ds)[0])
        if series is None:
            return []
        scale = _aia_scale_arguments(name, args, series)

        def header_of(record):
            return _scaled_header(record, scale, name)

        return _im_patch(
            records, steps[1][1], requestid, lookup=lookup, ds=ds, now=now, header_of=header_of, scaled=True
        )
    return _im_patch(records, steps[0][1], requestid, lookup=lookup, ds=ds, now=now)
