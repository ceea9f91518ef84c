"""
From a query to an export plan: record sets, im_patch process strings and every check.

`make_plan` turns the plain values of one query block (from the attrs walker) and the
series' structure (from ``jsoc_info``) into an `ExportPlan`: the record set to export and
the ``process`` string to send, built the way JSOC's export web form builds them. Every rule
about what JSOC would accept lives here, as pure code: nothing in this module does I/O, so
every check runs before anything is sent.
"""

import math
import re
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sunpy.coordinates import HeliographicStonyhurst

from sunpy_jsoc_cutout import geometry
from sunpy_jsoc_cutout.attrs import ActiveRegion

__all__ = [
    "CHANNELS",
    "NOAA_KEYS",
    "NOAA_SERIES",
    "TAR_THRESHOLD",
    "T_REF_WINDOW",
    "ExportPlan",
    "ImPatch",
    "ResolvedRegion",
    "SeriesInfo",
    "active_region",
    "aia_scale_step",
    "check_notify",
    "check_t_ref",
    "make_plan",
    "noaa_record_set",
    "parse_drms_time",
    "pick_active_region",
]

_EUV = (94, 131, 171, 193, 211, 304, 335)
_UV = (1600, 1700)
_VIS = (4500,)
# The channels of each AIA series (JSOC's WAVELNTH values, in Angstrom). aia.lev1 holds them
# all, with FSN rather than WAVELNTH as its second prime key.
CHANNELS = {
    "aia.lev1_euv_12s": _EUV,
    "aia.lev1_uv_24s": _UV,
    "aia.lev1_vis_1h": _VIS,
    "aia.lev1": _EUV + _UV + _VIS,
}
# Series whose T_REC slots are sparse: DRMS's "@step" is unreliable there (jsoc-api.md 1.4, 4),
# so a.Sample is refused and the wavelength goes to a where clause.
SPARSE_SERIES = frozenset({"aia.lev1"})
# im_patch looks for its reference image near t_ref; the JSOC form says data must exist
# within 4 hours of it.
T_REF_WINDOW = 4 * u.hour
# The JSOC series the export form reads NOAA active-region positions from, and its keys.
NOAA_SERIES = "su_rsb.NOAA_ActiveRegions"
NOAA_KEYS = ("ObservationTime", "LatitudeHG", "LongitudeCM")
# DRMS's missing value for int keywords: records with CAMERA of this are junk (jsoc-api.md 4).
DRMS_MISSING_INT = "-2147483648"
# Exports with more records than this come as one tar (url-tar) rather than file by file:
# JSOC asks for tars when there are many files.
TAR_THRESHOLD = 8
# Bytes per cutout pixel: im_patch writes floats.
_BYTES_PER_PIXEL = 4
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class SeriesInfo:
    """
    What a plan needs to know of a DRMS series, read from ``jsoc_info op=series_struct``.

    Parameters
    ----------
    name : str
        The series name as the user gave it.
    primekeys : tuple of str
        The prime keys, in order.
    time_keys : frozenset of str
        The keywords of type time.
    step : float or None
        The slot step of the first prime key in seconds, when it is slotted.
    segments : tuple of str
        The segment names, the first being the one ``im_patch`` cuts by default.
    dims : tuple of int, optional
        The image size of the first segment, ``(4096, 4096)`` when the series does not say.
    """

    name: str
    primekeys: tuple
    time_keys: frozenset
    step: float | None
    segments: tuple
    dims: tuple = (geometry.DETECTOR_PIXELS, geometry.DETECTOR_PIXELS)

    @classmethod
    def from_series_struct(cls, name, body):
        """
        Build from the JSON body of ``jsoc_info op=series_struct``.

        Parameters
        ----------
        name : str
            The series name.
        body : dict
            The decoded JSON answer.

        Returns
        -------
        SeriesInfo
        """
        primekeys = tuple(body.get("primekeys") or ())
        time_keys = frozenset(
            k["name"] for k in body.get("keywords", ()) if str(k.get("type", "")).lower() == "time"
        )
        step = None
        for info in body.get("primekeysinfo", ()):
            if primekeys and info.get("name") == primekeys[0] and int(info.get("slotted", 0)):
                step = _seconds(info.get("step"))
        segments = tuple(seg["name"] for seg in body.get("segments", ()))
        dims = (geometry.DETECTOR_PIXELS, geometry.DETECTOR_PIXELS)
        for seg in body.get("segments", ())[:1]:
            match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", str(seg.get("dims") or ""))
            if match:
                dims = (int(match.group(1)), int(match.group(2)))
        return cls(
            name=name, primekeys=primekeys, time_keys=time_keys, step=step, segments=segments, dims=dims
        )

    @property
    def instrument(self):
        """``"AIA"`` or ``"HMI"``, from the series name."""
        return self.name.split(".", 1)[0].upper()

    @property
    def channels(self):
        """The AIA channels of the series, or an empty tuple."""
        return CHANNELS.get(self.name.lower(), ())

    @property
    def sparse(self):
        """Whether DRMS's ``@step`` sampling is unreliable on this series (``aia.lev1``)."""
        return self.name.lower() in SPARSE_SERIES

    @property
    def is_cea(self):
        """Whether the series holds CEA remaps (``hmi.sharp_cea_720s``), which im_patch cannot cut."""
        return "cea" in self.name.lower()


def _seconds(step):
    """Seconds in a DRMS step string such as ``"12"``, ``"12s"`` or ``"1.000000m"``."""
    if step is None:
        return None
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([smhd]?)\s*", str(step))
    if not match:
        return None
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def plain_number(value, precision=3):
    """
    A number as JSOC's web form sends it: plain decimals, no exponent, no unit.

    Parameters
    ----------
    value : float
    precision : int
        Decimal places kept at most (3 is a thousandth of an arcsecond or pixel).

    Returns
    -------
    str
    """
    text = np.format_float_positional(float(value), precision=precision, unique=True, trim="-")
    return "0" if text in ("-0", "") else text


def drms_time(time):
    """A time in DRMS form on the TAI scale, e.g. ``2014.02.05_08:00:35_TAI``."""
    return time.tai.strftime("%Y.%m.%d_%H:%M:%S_TAI")


def parse_drms_time(text):
    """
    A time as DRMS prints it, e.g. ``2014.02.05_00:00:00_UT``, ``..._TAI`` or ISO with ``Z``.

    Parameters
    ----------
    text : str

    Returns
    -------
    `~astropy.time.Time`

    Raises
    ------
    ValueError
        If the text is not a time.
    """
    value = str(text).strip()
    scale = "utc"
    match = re.fullmatch(r"(.*?)(?:_(TAI|UTC|UT|Z))?", value)
    body, zone = match.group(1), match.group(2)
    if zone == "TAI":
        scale = "tai"
    if body.endswith("Z"):
        body = body[:-1]
    drms = re.fullmatch(r"(\d{4})\.(\d{1,2})\.(\d{1,2})(?:_(\d{1,2}:\d{2}(?::\d{2}(?:\.\d*)?)?))?", body)
    if drms:
        year, month, day, clock = drms.groups()
        clock = clock or "00:00"
        if clock.count(":") == 1:
            clock += ":00"
        body = f"{year}-{int(month):02d}-{int(day):02d}T{clock}"
    try:
        return Time(body, scale=scale).utc
    except ValueError:
        raise ValueError(f"{text!r} is not a time JSOC prints") from None


@dataclass(frozen=True)
class ResolvedRegion:
    """
    A NOAA active region's position as JSOC's export form picks it.

    Parameters
    ----------
    number : int
        The NOAA number (5 digits).
    t_ref : `~astropy.time.Time`
        The ``ObservationTime`` of the report chosen.
    longitude, latitude : float
        ``LongitudeCM`` (degrees from the central meridian) and ``LatitudeHG``, in degrees.
    """

    number: int
    t_ref: Time
    longitude: float
    latitude: float

    def center(self):
        """The position as a Stonyhurst coordinate at ``t_ref``."""
        return SkyCoord(
            self.longitude * u.deg, self.latitude * u.deg, frame=HeliographicStonyhurst(obstime=self.t_ref)
        )


def active_region(params):
    """
    The `~sunpy_jsoc_cutout.attrs.ActiveRegion` a query block is centred on, if any.

    Parameters
    ----------
    params : dict
        The walker's values for one query block.

    Returns
    -------
    `~sunpy_jsoc_cutout.attrs.ActiveRegion` or None
    """
    cutout = params.get("cutout")
    center = getattr(cutout, "center", None)
    return center if isinstance(center, ActiveRegion) else None


def noaa_record_set(region):
    """
    The record set the JSOC form lists to find a NOAA region: ``su_rsb.NOAA_ActiveRegions[][11967]``.

    Parameters
    ----------
    region : `~sunpy_jsoc_cutout.attrs.ActiveRegion`

    Returns
    -------
    str
    """
    return f"{NOAA_SERIES}[][{region.number}]"


def pick_active_region(region, listing):
    """
    Choose the position of a NOAA region from JSOC's reports, as the export form does.

    Of all daily reports, the one with the smallest ``|LongitudeCM|`` (nearest the central
    meridian) wins; its ``ObservationTime`` becomes ``t_ref``.

    Parameters
    ----------
    region : `~sunpy_jsoc_cutout.attrs.ActiveRegion`
    listing : dict
        ``jsoc_info op=rs_list`` values of `noaa_record_set` for `NOAA_KEYS`, name -> list of
        strings.

    Returns
    -------
    ResolvedRegion

    Raises
    ------
    ValueError
        If JSOC has no usable report of the region.
    """
    times = listing.get("ObservationTime") or []
    lats = listing.get("LatitudeHG") or []
    lons = listing.get("LongitudeCM") or []
    best = None
    for when, lat, lon in zip(times, lats, lons, strict=False):
        try:
            lon_value, lat_value, t_ref = float(lon), float(lat), parse_drms_time(when)
        except ValueError:
            continue  # a report with a missing value cannot place the region
        if not (np.isfinite(lon_value) and np.isfinite(lat_value)):
            continue
        if best is None or abs(lon_value) < abs(best.longitude):
            best = ResolvedRegion(region.number, t_ref, lon_value, lat_value)
    if best is None:
        raise ValueError(
            f"ActiveRegion: NOAA {region.number} is not in JSOC's {NOAA_SERIES} series; give the "
            "5-digit number of a region NOAA reported (e.g. 11967), or a coordinate as the centre."
        )
    return best


def aia_scale_step(series):
    """
    The aia_scale step the JSOC export form uses for a series, or an error for a non-AIA series.

    The form substitutes ``lev1p5`` for ``lev1`` in the series name: ``aia_scale_orig`` when
    that gives ``aia.lev1p5`` (i.e. for ``aia.lev1``), ``aia_scale_aialev1`` for the other
    ``aia.lev1*`` series (jsoc-api.md section 2, processing.js ``AiaScaleCheck``).

    Parameters
    ----------
    series : SeriesInfo

    Returns
    -------
    str

    Raises
    ------
    ValueError
        For series aia_scale cannot bring to level 1.5.
    """
    name = series.name.strip().lower()
    if not name.startswith("aia.lev1"):
        raise ValueError(
            f"a.jsoc_cutout.Scale: {series.name} is not an AIA level-1 series; aia_scale brings "
            "AIA level-1 images to level 1.5 and works on aia.lev1, aia.lev1_euv_12s, "
            "aia.lev1_uv_24s and aia.lev1_vis_1h only; use Scale(False) or leave it out."
        )
    # The form's test: re.sub(lev1 -> lev1p5) == "aia.lev1p5"
    return (
        "aia_scale_orig" if re.sub("lev1", "lev1p5", name, count=1) == "aia.lev1p5" else "aia_scale_aialev1"
    )


def check_t_ref(t_ref, start, end):
    """
    Check that im_patch will find its reference image: ``t_ref`` near the data asked for.

    Parameters
    ----------
    t_ref, start, end : `~astropy.time.Time`

    Raises
    ------
    ValueError
        If ``t_ref`` is more than `T_REF_WINDOW` outside the query's time range.
    """
    t_ref, start, end = Time(t_ref), Time(start), Time(end)
    before, after = (start - t_ref).to(u.hour), (t_ref - end).to(u.hour)
    if before > T_REF_WINDOW or after > T_REF_WINDOW:
        raise ValueError(
            f"a.jsoc_cutout.Cutout: the centre is given at {t_ref.utc.isot} (its obstime, t_ref), "
            f"{plain_number(max(before, after).to_value(u.hour), 1)} hours from the query's time "
            f"range {start.utc.isot} to {end.utc.isot}; im_patch places the box on an image "
            f"within {plain_number(T_REF_WINDOW.to_value(u.hour))} hours of t_ref. Give the "
            "centre at a time inside the query (e.g. rotate it with sunpy's RotatedSunFrame), or "
            "as a HeliographicCarrington coordinate, which needs no reference image."
        )


@dataclass(frozen=True)
class ImPatch:
    """
    The arguments of one ``im_patch`` processing step.

    Parameters
    ----------
    locunits : str
        ``arcsec``, ``pixels``, ``stony`` or ``carrlong``.
    x, y : float
        The box centre in ``locunits`` (degrees for ``stony`` and ``carrlong``).
    boxunits : str
        ``pixels``, ``arcsec`` or ``degrees``.
    width, height : float
        The box size in ``boxunits``.
    t_ref : str
        The reference time, ISO form in UTC, as sunpy and the web form send it.
    tracking, register, crop : bool
        The meanings users know; `arguments` writes JSOC's inverted tracking flag.
    car_rot : int, optional
        The Carrington rotation, sent only with ``locunits=carrlong``.
    target : str, optional
        What the centre stands for, for result tables (e.g. ``"NOAA 11967"``).
    """

    locunits: str
    x: float
    y: float
    boxunits: str
    width: float
    height: float
    t_ref: str
    tracking: bool = True
    register: bool = False
    crop: bool = False
    car_rot: int | None = None
    target: str = ""

    def arguments(self, t_start, t_stop, cadence):
        """
        The im_patch step string, in the exact order the JSOC web form writes it.

        Parameters
        ----------
        t_start, t_stop : str
            The first and last record times, as ``jsoc_info`` printed them.
        cadence : str
            The cadence with its unit, e.g. ``"60s"``.

        Returns
        -------
        str
        """
        # The web form pins t_ref to t_start when tracking is off: the box then stays
        # where it is in the first image.
        t_ref = self.t_ref if self.tracking else t_start
        car_rot = [f"car_rot={self.car_rot}"] if self.locunits == "carrlong" else []
        return ",".join(
            [
                "im_patch",
                f"t_start={t_start}",
                f"t_stop={t_stop}",
                f"t={0 if self.tracking else 1}",  # JSOC's flag disables tracking
                f"r={int(self.register)}",
                f"c={int(self.crop)}",
                f"cadence={cadence}",
                f"locunits={self.locunits}",
                f"boxunits={self.boxunits}",
                f"t_ref={t_ref}",
                *car_rot,
                f"x={plain_number(self.x)}",
                f"y={plain_number(self.y)}",
                f"width={plain_number(self.width)}",
                f"height={plain_number(self.height)}",
            ]
        )

    def describe(self):
        """A one-line account of the cutout for result tables."""
        units = {"arcsec": '"', "pixels": " px", "degrees": " deg"}
        size = f"{plain_number(self.width)}x{plain_number(self.height)}{units[self.boxunits]}"
        x, y = plain_number(self.x, 1), plain_number(self.y, 1)
        where = {
            "arcsec": f'({x}, {y})"',
            "pixels": f"({x}, {y}) px",
            "stony": f"Stonyhurst ({x}, {y}) deg at {self.t_ref[:16]}",
            "carrlong": f"Carrington ({x}, {y}) deg, CR {self.car_rot}",
        }[self.locunits]
        if self.target:
            where = f"{self.target} at {where}"
        flags = ["tracked" if self.tracking else "fixed"]
        flags += [name for name, on in (("registered", self.register), ("cropped", self.crop)) if on]
        return f"{size} at {where}, {', '.join(flags)}"


@dataclass(frozen=True)
class ExportPlan:
    """
    One JSOC export: what to ask for and how.

    Parameters
    ----------
    series : SeriesInfo
    record_set : str
        The record set, ``series[<time filter>]<other filters>{segments}``, e.g.
        ``aia.lev1_euv_12s[2014.02.05_08:00:35_TAI-...@60s][171,193]{image}`` or, for
        ``aia.lev1``, ``aia.lev1[...][? WAVELNTH IN (171,193) ?]{image}``. The first bracket
        is always the time filter.
    impatch : ImPatch
    cadence : str
        The cadence im_patch gets, with its unit.
    filenamefmt : str
        JSOC's filename template.
    box_pixels : tuple of float
        The box size in pixels of the images im_patch cuts (0.6"/px after aia_scale), for
        size estimates.
    notify : str or None
        The notify address given in the query, if any.
    protocol : str
        JSOC's export protocol.
    aia_scale : str or None
        The aia_scale step run before im_patch (``aia_scale_aialev1`` or ``aia_scale_orig``).
    where : str
        The SQL where clause of the record set (``WAVELNTH IN (171,193)`` for ``aia.lev1``).
    """

    series: SeriesInfo
    record_set: str
    impatch: ImPatch
    cadence: str
    filenamefmt: str
    box_pixels: tuple
    notify: str | None = None
    protocol: str = "FITS"
    aia_scale: str | None = None
    where: str = ""

    def process(self, t_start, t_stop):
        """
        The ``process`` value of the export request.

        Parameters
        ----------
        t_start, t_stop : str
            The first and last record times of the export, as ``jsoc_info`` printed them.

        Returns
        -------
        str
            ``n=0|[aia_scale_...|]im_patch,...``; ``n=0`` puts no limit on the record count.
            Steps come in the web form's order, aia_scale before im_patch.
        """
        steps = [self.aia_scale] if self.aia_scale else []
        steps.append(self.impatch.arguments(t_start, t_stop, self.cadence))
        return "n=0|" + "|".join(steps)

    @staticmethod
    def method(n_records):
        """``url-tar`` for more than a few records, ``url`` otherwise."""
        return "url-tar" if n_records > TAR_THRESHOLD else "url"

    @property
    def size_ratio(self):
        """The cutout's share of a full frame, which JSOC multiplies its size estimate by."""
        # aia_scale keeps the 4096x4096 frame (size ratio 1 on the web form): only im_patch counts.
        width, height = self.box_pixels
        full = self.series.dims[0] * self.series.dims[1]
        return min(1.0, max(width * height / full, 1e-6))

    @property
    def cutout_bytes(self):
        """An estimate of one cutout file's size in bytes."""
        width, height = (math.ceil(n) + 1 for n in self.box_pixels)
        return width * height * _BYTES_PER_PIXEL + 2 * 2880  # header blocks


def check_notify(address):
    """
    Check that a notify address looks like an email address.

    Parameters
    ----------
    address : str

    Returns
    -------
    str
        The address, stripped.

    Raises
    ------
    ValueError
        If it is not an email address.
    """
    if not isinstance(address, str) or not _EMAIL.match(address.strip()):
        raise ValueError(
            f"a.jsoc.Notify: {address!r} is not an email address; JSOC needs an address "
            "registered at http://jsoc.stanford.edu/ajax/register_email.html"
        )
    return address.strip()


def series_name(params):
    """
    The series of a query block, or a clear error when none was given.

    Parameters
    ----------
    params : dict
        The walker's values for one query block.

    Returns
    -------
    str
    """
    if "series" not in params:
        raise ValueError(
            "A JSOC cutout query needs a series: add e.g. a.jsoc.Series('aia.lev1_euv_12s') "
            "or a.jsoc.Series('hmi.M_45s')."
        )
    return params["series"].value


def make_plan(params, series, *, region=None):
    """
    Turn one query block into an export plan, checking everything JSOC would trip over.

    Parameters
    ----------
    params : dict
        The walker's values for one query block (see `sunpy_jsoc_cutout.attrs.walker`).
    series : SeriesInfo
        The structure of the series asked for.
    region : ResolvedRegion, optional
        The position of the block's `~sunpy_jsoc_cutout.attrs.ActiveRegion`, from
        `pick_active_region`; needed when the cutout is centred on one.

    Returns
    -------
    ExportPlan

    Raises
    ------
    ValueError, TypeError
        For any query JSOC cannot serve as asked, naming the parameter and what would work.
    """
    if "time" not in params:
        raise ValueError("A JSOC cutout query needs a time range: add a.Time(start, end).")
    start, end = params["time"].start, params["time"].end
    if "cutout" not in params:
        raise ValueError(
            "A JSOC cutout query needs a box: add a.jsoc_cutout.Cutout(center=..., width=..., height=...)."
        )
    _check_series(series)
    scale = bool(params["scale"].value) if "scale" in params else False
    aia_scale = aia_scale_step(series) if scale else None
    notify = check_notify(params["notify"].value) if "notify" in params else None

    segments = _segments(params, series)
    key_filter, where = _wavelength_filter(params, series)
    time_filter = f"{drms_time(start)}-{drms_time(end)}"
    cadence = f"{plain_number(series.step or 1, 6)}s"
    if "sample" in params:
        seconds = _check_sample(float(params["sample"].value), series)  # a.Sample keeps seconds
        cadence = f"{plain_number(seconds, 6)}s"
        time_filter += f"@{cadence}"
    record_set = f"{series.name}[{time_filter}]{key_filter}{{{','.join(segments)}}}"

    impatch, box_pixels = _impatch(params, series, start, end, region=region, scale=scale)
    return ExportPlan(
        series=series,
        record_set=record_set,
        impatch=impatch,
        cadence=cadence,
        filenamefmt=_filenamefmt(series),
        box_pixels=box_pixels,
        notify=notify,
        aia_scale=aia_scale,
        where=where,
    )


def _check_series(series):
    """The series-level rules: a time-indexed AIA or HMI image series im_patch can cut."""
    if series.is_cea:
        raise ValueError(
            f"a.jsoc.Series: {series.name} holds CEA (cylindrical equal-area) remaps, and im_patch "
            "cuts only helioprojective (HPLN-TAN/HPLT-TAN) images; use a full-disk series such as "
            "hmi.M_720s, hmi.M_45s, hmi.Ic_45s or aia.lev1_euv_12s, or fetch the SHARP itself "
            "with sunpy's a.jsoc attrs."
        )
    if not series.primekeys or series.primekeys[0] not in ("T_REC", "T_OBS"):
        raise ValueError(
            f"a.jsoc.Series: {series.name} is not indexed by time first (prime keys "
            f"{list(series.primekeys)}), so im_patch cannot cut it; use a series such as "
            "aia.lev1_euv_12s or hmi.M_45s."
        )
    if series.instrument not in geometry.PLATE_SCALE:
        raise ValueError(
            f"a.jsoc.Series: {series.name} is not an AIA or HMI series; im_patch cutouts are "
            "available for aia.* and hmi.* series such as aia.lev1_euv_12s or hmi.M_45s."
        )


def _check_sample(seconds, series):
    """a.Sample against the series: sampling it can do, no finer than its cadence, whole slots."""
    if series.sparse:
        # im_patch picks aia.lev1's records per cadence itself only for a record set with "@";
        # but JSOC first opens the export's record set, and "@" on aia.lev1's sparse slots finds
        # next to no records there (jsoc-api.md 1.4 and 4). A cadence without "@" is ignored.
        raise ValueError(
            f"a.Sample: JSOC cannot sample {series.name} reliably (with '@cadence' the export's "
            "record set finds next to no records on its sparse time slots, and im_patch ignores a "
            "cadence without it); use aia.lev1_euv_12s, aia.lev1_uv_24s or aia.lev1_vis_1h, which "
            "hold the same images on regular slots, or leave a.Sample out to cut every image."
        )
    finest = series.step or 1
    if seconds < finest - 1e-9:
        raise ValueError(
            f"a.Sample: {plain_number(seconds)} s is finer than the {plain_number(finest)} s cadence "
            f"of {series.name}; use at least {plain_number(finest)} s."
        )
    slots = seconds / finest
    if series.step and abs(slots - round(slots)) > 1e-6:
        lower, upper = math.floor(slots) * finest, math.ceil(slots) * finest
        raise ValueError(
            f"a.Sample: {plain_number(seconds)} s is not a whole number of the {plain_number(finest)} s "
            f"slots of {series.name}, and JSOC would round it; use {plain_number(lower)} s or "
            f"{plain_number(upper)} s."
        )
    return seconds


def _segments(params, series):
    asked = params.get("segments")
    if not asked:
        if not series.segments:
            raise ValueError(f"a.jsoc.Series: {series.name} has no segments to cut out.")
        return [series.segments[0]]
    unknown = [s for s in asked if s not in series.segments]
    if unknown:
        raise ValueError(
            f"a.jsoc.Segment: {', '.join(unknown)} is not a segment of {series.name}; "
            f"its segments are {', '.join(series.segments)}."
        )
    return list(dict.fromkeys(asked))


def _wavelength_filter(params, series):
    """
    The wavelength part of the record set, checked against the series' channels.

    Returns the filter text (``[171,193]``, or ``[? WAVELNTH IN (171,193) ?]`` for series
    without a WAVELNTH prime key such as aia.lev1) and the where clause alone.
    """
    wavelength = params.get("wavelength")
    if wavelength is None:
        return "", ""
    channels = series.channels
    if not channels:
        raise ValueError(
            f"a.jsoc_cutout.Wavelength: {series.name} is not indexed by wavelength; use a series "
            "such as aia.lev1_euv_12s, aia.lev1_uv_24s or aia.lev1, or leave the wavelength out."
        )
    valid = ", ".join(str(c) for c in channels)
    if hasattr(wavelength, "wavelengths"):  # a.jsoc_cutout.Wavelength: listed channels
        asked = [float(w.to_value(u.AA)) for w in wavelength.wavelengths]
        chosen = []
        for value in asked:
            match = [c for c in channels if abs(c - value) < 0.5]
            if not match:
                raise ValueError(
                    f"a.jsoc_cutout.Wavelength: {value:g} Angstrom is not a channel of "
                    f"{series.name}; its channels are {valid} Angstrom."
                )
            chosen.append(match[0])
    else:  # core a.Wavelength: one value, or every channel inside a range
        bounds = (wavelength.min, wavelength.max)
        low, high = sorted(float(w.to_value(u.AA, equivalencies=u.spectral())) for w in bounds)
        chosen = [c for c in channels if low - 0.5 <= c <= high + 0.5]
        if not chosen:
            raise ValueError(
                f"a.Wavelength: no channel of {series.name} lies in {low:g}-{high:g} Angstrom; "
                f"its channels are {valid} Angstrom."
            )
    chosen = tuple(sorted(set(chosen)))
    if "WAVELNTH" in series.primekeys:
        return f"[{','.join(str(c) for c in chosen)}]", ""
    # No WAVELNTH prime key (aia.lev1): select the channels with a DRMS SQL where clause.
    if len(chosen) == 1:
        where = f"WAVELNTH={chosen[0]}"
    else:
        where = f"WAVELNTH IN ({','.join(str(c) for c in chosen)})"
    return f"[? {where} ?]", where


def _filenamefmt(series):
    """JSOC's default template: the series, each prime key (times compacted), the segment."""
    parts = [series.name]
    for key in series.primekeys:
        if key == "FSN" and series.channels:
            # aia.lev1 mixes channels under one prime-key pair; name them as the JSOC guide does.
            parts.append("{WAVELNTH}")
        parts.append(f"{{{key}:A}}" if key in series.time_keys or key.startswith("T_") else f"{{{key}}}")
    return ".".join([*parts, "{segment}"])


def _flags(params):
    tracking = params["tracking"].value if "tracking" in params else True
    register = params["register"].value if "register" in params else False
    crop = params["crop"].value if "crop" in params else False
    return tracking, register, crop


def _impatch(params, series, start, end, *, region=None, scale=False):
    """The im_patch arguments and the box in pixels, with every location and box rule."""
    cutout = params["cutout"]
    tracking, register, crop = _flags(params)
    instrument = series.instrument
    plate_scale = geometry.AIA_SCALED_PLATE_SCALE if scale else None
    target = ""

    if cutout.bottom_left is not None:
        t_ref = _obstime(cutout.bottom_left) or start
        center, width, height = geometry.corners_to_box(cutout.bottom_left, cutout.top_right, t_ref)
    else:
        center, width, height = cutout.center, cutout.width, cutout.height
        if isinstance(center, ActiveRegion):
            if region is None or region.number != center.number:
                raise ValueError(
                    f"ActiveRegion: NOAA {center.number} has not been looked up; search with Fido "
                    "(or JSOCCutoutClient.search), which finds its position on JSOC."
                )
            target = f"NOAA {region.number}"
            center = region.center()
        t_ref = _obstime(center) or start

    kind = geometry.location_kind(center)
    if kind == "carrlong" and not tracking:
        raise ValueError(
            "a.jsoc_cutout.Tracking: Tracking(False) cannot be used with a Carrington centre: "
            "JSOC would return patches that do not follow the region (the JSOC cutout guide: "
            '"the tracking option MUST be selected or the returned data will be complete '
            'nonsense"); use Tracking(True) or give the centre in Helioprojective or '
            "HeliographicStonyhurst coordinates."
        )
    if tracking and kind != "carrlong" and not target:
        check_t_ref(t_ref, start, end)
    if target:
        # The JSOC form's t_ref is the report nearest the central meridian, maybe days away
        # from the query: what matters is that the tracked region faces SDO while the data run.
        for when in (start, end):
            if not geometry.is_on_near_side(center, when):
                raise ValueError(
                    f"a.jsoc_cutout.Cutout: {target} (at Stonyhurst {plain_number(region.longitude, 1)}, "
                    f"{plain_number(region.latitude, 1)} deg on {region.t_ref.utc.isot[:16]}) is on the "
                    f"far side of the Sun at {Time(when).utc.isot[:16]}; choose a time range while it "
                    "is on the disk (about a week either side of that date)."
                )

    car_rot = None
    latitude = 0 * u.deg
    if kind == "arcsec":
        seen = geometry.sdo_helioprojective(center, t_ref)
        if tracking and not geometry.is_on_disk(seen):
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the centre ({seen.Tx:.1f}, {seen.Ty:.1f}) is off the solar "
                "disk, and Tracking(True) needs a point on the Sun to follow; move the centre onto "
                "the disk or use Tracking(False)."
            )
        x, y = float(seen.Tx.to_value(u.arcsec)), float(seen.Ty.to_value(u.arcsec))
    elif kind in ("stony", "carrlong"):
        if not target and not geometry.is_on_near_side(center, t_ref):
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the {center.frame.name} centre ({center.lon:.1f}, "
                f"{center.lat:.1f}) is on the far side of the Sun at {Time(t_ref).utc.isot[:16]} "
                "(t_ref), where SDO cannot see it; give a point on the visible disk at that time "
                "(Stonyhurst longitude within about +-90 deg)."
            )
        if kind == "stony":
            x, y = geometry.stonyhurst_lonlat(center, t_ref)
        else:
            x, y = geometry.carrington_lonlat(center, t_ref)
            car_rot = geometry.carrington_rotation_at_meridian(x, t_ref)
        latitude = y * u.deg
    else:
        x, y = (float(v) for v in center.to_value(u.pix))
        limits = series.dims
        for name, value, limit in (("x", x, limits[0]), ("y", y, limits[1])):
            if not 1 <= value <= limit:
                raise ValueError(
                    f"a.jsoc_cutout.Cutout: the pixel centre {name}={value:g} is off the "
                    f"{limits[0]}x{limits[1]} detector; use 1 to {limit}."
                )

    boxunits, box = _box(width, height)
    box_pixels = geometry.box_in_pixels(
        width, height, instrument, plate_scale=plate_scale, latitude=latitude, t_ref=Time(t_ref)
    )
    scale_used = plate_scale if plate_scale is not None else geometry.PLATE_SCALE[instrument]
    for name, pixels, limit in zip(("width", "height"), box_pixels, series.dims, strict=True):
        if pixels > limit:
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the {name} of {plain_number(pixels, 0)} pixels is larger "
                f"than the {limit}-pixel detector of {instrument}; use at most {limit} pixels "
                f"({plain_number(limit * scale_used.value, 1)} arcsec)."
            )

    # Store the numbers as the process string sends them, so the plan holds what im_patch reads.
    x, y, width, height = (float(plain_number(value)) for value in (x, y, *box))
    impatch = ImPatch(
        locunits=kind,
        x=x,
        y=y,
        boxunits=boxunits,
        width=width,
        height=height,
        t_ref=Time(t_ref).utc.isot,
        tracking=tracking,
        register=register,
        crop=crop,
        car_rot=car_rot,
        target=target,
    )
    return impatch, box_pixels


def _box(width, height):
    """im_patch's boxunits and the box size in them, with the unit rules."""
    kinds = {_box_kind(width), _box_kind(height)}
    if len(kinds) != 1:
        raise ValueError(
            "a.jsoc_cutout.Cutout: width and height must be in the same kind of unit (both "
            f"pixels, both arcseconds or both heliographic degrees), got {width} and {height}."
        )
    boxunits = kinds.pop()
    unit = {"pixels": u.pix, "arcsec": u.arcsec, "degrees": u.deg}[boxunits]
    box = (float(width.to_value(unit)), float(height.to_value(unit)))
    for name, value in zip(("width", "height"), box, strict=True):
        if not value > 0:
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the {name} must be positive, got {plain_number(value)} "
                f"{boxunits}; give the corners of a box that has an area."
            )
        if boxunits == "degrees" and value > 180:
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the {name} of {plain_number(value)} heliographic degrees is "
                "more than a hemisphere; im_patch sizes degree boxes at the central meridian, so "
                "use at most 180 degrees (or give the box in pixels or arcseconds)."
            )
    return boxunits, box


def _box_kind(size):
    """im_patch's boxunits for a size: u.deg means degrees on the Sun, other angles arcsec."""
    if size.unit == u.pix:
        return "pixels"
    if size.unit == u.deg:
        return "degrees"
    return "arcsec"


def _obstime(coord):
    return getattr(coord, "obstime", None)
