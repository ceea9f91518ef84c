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
from sunpy.coordinates import Helioprojective

from sunpy_jsoc_cutout import geometry

__all__ = [
    "CHANNELS",
    "TAR_THRESHOLD",
    "ExportPlan",
    "ImPatch",
    "SeriesInfo",
    "check_notify",
    "make_plan",
]

# The channels of each AIA series (JSOC's WAVELNTH values, in Angstrom).
CHANNELS = {
    "aia.lev1_euv_12s": (94, 131, 171, 193, 211, 304, 335),
    "aia.lev1_uv_24s": (1600, 1700),
    "aia.lev1_vis_1h": (4500,),
}
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
    """

    name: str
    primekeys: tuple
    time_keys: frozenset
    step: float | None
    segments: tuple

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
        return cls(name=name, primekeys=primekeys, time_keys=time_keys, step=step, segments=segments)

    @property
    def instrument(self):
        """``"AIA"`` or ``"HMI"``, from the series name."""
        return self.name.split(".", 1)[0].upper()

    @property
    def channels(self):
        """The AIA channels of the series, or an empty tuple."""
        return CHANNELS.get(self.name.lower(), ())


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


@dataclass(frozen=True)
class ImPatch:
    """
    The arguments of one ``im_patch`` processing step.

    Parameters
    ----------
    locunits : str
        ``arcsec`` or ``pixels``.
    x, y : float
        The box centre in ``locunits``.
    boxunits : str
        ``pixels`` or ``arcsec``.
    width, height : float
        The box size in ``boxunits``.
    t_ref : str
        The reference time, ISO form in UTC, as sunpy and the web form send it.
    tracking, register, crop : bool
        The meanings users know; `arguments` writes JSOC's inverted tracking flag.
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
                f"x={plain_number(self.x)}",
                f"y={plain_number(self.y)}",
                f"width={plain_number(self.width)}",
                f"height={plain_number(self.height)}",
            ]
        )

    def describe(self):
        """A one-line account of the cutout for result tables."""
        units = {"arcsec": '"', "pixels": " px"}
        size = f"{plain_number(self.width)}x{plain_number(self.height)}{units[self.boxunits]}"
        where = f"({plain_number(self.x, 1)}, {plain_number(self.y, 1)}){units[self.locunits]}"
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
        The record set, e.g. ``aia.lev1_euv_12s[2014.02.05_08:00:35_TAI-...@60s][171,193]{image}``.
    impatch : ImPatch
    cadence : str
        The cadence im_patch gets, with its unit.
    filenamefmt : str
        JSOC's filename template.
    box_pixels : tuple of float
        The box size in detector pixels, for size estimates.
    notify : str or None
        The notify address given in the query, if any.
    protocol : str
        JSOC's export protocol.
    """

    series: SeriesInfo
    record_set: str
    impatch: ImPatch
    cadence: str
    filenamefmt: str
    box_pixels: tuple
    notify: str | None = None
    protocol: str = "FITS"

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
            ``n=0|im_patch,...``; ``n=0`` puts no limit on the record count.
        """
        return f"n=0|{self.impatch.arguments(t_start, t_stop, self.cadence)}"

    @staticmethod
    def method(n_records):
        """``url-tar`` for more than a few records, ``url`` otherwise."""
        return "url-tar" if n_records > TAR_THRESHOLD else "url"

    @property
    def size_ratio(self):
        """The cutout's share of a full frame, which JSOC multiplies its size estimate by."""
        width, height = self.box_pixels
        full = geometry.DETECTOR_PIXELS**2
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


def make_plan(params, series):
    """
    Turn one query block into an export plan, checking everything JSOC would trip over.

    Parameters
    ----------
    params : dict
        The walker's values for one query block (see `sunpy_jsoc_cutout.attrs.walker`).
    series : SeriesInfo
        The structure of the series asked for.

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
    if not series.primekeys or series.primekeys[0] not in ("T_REC", "T_OBS"):
        raise ValueError(
            f"a.jsoc.Series: {series.name} is not indexed by time first (prime keys "
            f"{list(series.primekeys)}), so im_patch cannot cut it; use a series such as "
            "aia.lev1_euv_12s or hmi.M_45s."
        )
    if params.get("scale") is not None and params["scale"].value:
        raise ValueError(
            "a.jsoc_cutout.Scale(True) is not supported yet: AIA level 1.5 through aia_scale "
            "arrives in a later release; use Scale(False) or leave it out."
        )
    notify = check_notify(params["notify"].value) if "notify" in params else None

    segments = _segments(params, series)
    time_filter = f"{drms_time(start)}-{drms_time(end)}"
    cadence = f"{plain_number(series.step or 1, 6)}s"
    if "sample" in params:
        seconds = float(params["sample"].value)  # a.Sample keeps seconds
        if series.step and seconds < series.step:
            raise ValueError(
                f"a.Sample: {plain_number(seconds)} s is finer than the {plain_number(series.step)} s "
                f"cadence of {series.name}; use at least {plain_number(series.step)} s."
            )
        cadence = f"{plain_number(seconds, 6)}s"
        time_filter += f"@{cadence}"
    record_set = f"{series.name}[{time_filter}]{_wavelength_filter(params, series)}{{{','.join(segments)}}}"

    impatch, box_pixels = _impatch(params, series, start)
    return ExportPlan(
        series=series,
        record_set=record_set,
        impatch=impatch,
        cadence=cadence,
        filenamefmt=_filenamefmt(series),
        box_pixels=box_pixels,
        notify=notify,
    )


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
    """The ``[171,193]`` part of the record set, checked against the series' channels."""
    wavelength = params.get("wavelength")
    if wavelength is None:
        return ""
    if "WAVELNTH" not in series.primekeys:
        raise ValueError(
            f"a.jsoc_cutout.Wavelength: {series.name} is not indexed by wavelength; use a series "
            "such as aia.lev1_euv_12s or aia.lev1_uv_24s, or leave the wavelength out."
        )
    channels = series.channels
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
    chosen = sorted(set(chosen))
    return f"[{','.join(str(c) for c in chosen)}]"


def _filenamefmt(series):
    """JSOC's default template: the series, each prime key (times compacted), the segment."""
    parts = [series.name]
    for key in series.primekeys:
        parts.append(f"{{{key}:A}}" if key in series.time_keys or key.startswith("T_") else f"{{{key}}}")
    return ".".join([*parts, "{segment}"])


def _impatch(params, series, start):
    cutout = params["cutout"]
    tracking = params["tracking"].value if "tracking" in params else True
    register = params["register"].value if "register" in params else False
    crop = params["crop"].value if "crop" in params else False
    instrument = series.instrument
    if instrument not in geometry.PLATE_SCALE:
        raise ValueError(
            f"a.jsoc.Series: {series.name} is not an AIA or HMI series; im_patch cutouts are "
            "available for aia.* and hmi.* series."
        )

    if cutout.bottom_left is not None:
        t_ref = _obstime(cutout.bottom_left) or start
        center, width, height = geometry.corners_to_box(cutout.bottom_left, cutout.top_right, t_ref)
    else:
        center, width, height = cutout.center, cutout.width, cutout.height
        t_ref = (_obstime(center) if isinstance(center, SkyCoord) else None) or start

    if isinstance(center, SkyCoord):
        if not isinstance(center.frame, Helioprojective):
            raise ValueError(
                f"a.jsoc_cutout.Cutout: a {center.frame.name} centre is not supported yet; give a "
                "Helioprojective centre (SkyCoord(Tx, Ty, frame='helioprojective', ...)) or a "
                "pixel pair such as (2048, 2048) * u.pix."
            )
        seen = geometry.sdo_helioprojective(center, t_ref)
        if tracking and not geometry.is_on_disk(seen):
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the centre ({seen.Tx:.1f}, {seen.Ty:.1f}) is off the solar "
                "disk, and Tracking(True) needs a point on the Sun to follow; move the centre onto "
                "the disk or use Tracking(False)."
            )
        locunits, x, y = "arcsec", float(seen.Tx.to_value(u.arcsec)), float(seen.Ty.to_value(u.arcsec))
    else:
        x, y = (float(v) for v in center.to_value(u.pix))
        for name, value in (("x", x), ("y", y)):
            if not 1 <= value <= geometry.DETECTOR_PIXELS:
                raise ValueError(
                    f"a.jsoc_cutout.Cutout: the pixel centre {name}={value:g} is off the "
                    f"{geometry.DETECTOR_PIXELS}x{geometry.DETECTOR_PIXELS} detector; use 1 to "
                    f"{geometry.DETECTOR_PIXELS}."
                )
        locunits = "pixels"

    kinds = {_box_kind(width), _box_kind(height)}
    if len(kinds) != 1:
        raise ValueError(
            "a.jsoc_cutout.Cutout: width and height must be in the same kind of unit (both "
            f"pixels, both arcseconds or both heliographic degrees), got {width} and {height}."
        )
    boxunits = kinds.pop()
    if boxunits == "degrees":
        raise ValueError(
            "a.jsoc_cutout.Cutout: boxes in heliographic degrees (u.deg) are not supported yet; "
            "give width and height in pixels (u.pix) or arcseconds (u.arcsec)."
        )
    unit = u.pix if boxunits == "pixels" else u.arcsec
    box = (float(width.to_value(unit)), float(height.to_value(unit)))
    box_pixels = geometry.box_in_pixels(width, height, instrument)
    limit = geometry.DETECTOR_PIXELS * geometry.PLATE_SCALE[instrument].value
    for name, pixels in zip(("width", "height"), box_pixels, strict=True):
        if pixels > geometry.DETECTOR_PIXELS:
            raise ValueError(
                f"a.jsoc_cutout.Cutout: the {name} of {plain_number(pixels, 0)} pixels is larger "
                f"than the {geometry.DETECTOR_PIXELS}-pixel detector of {instrument}; use at most "
                f"{geometry.DETECTOR_PIXELS} pixels "
                f"({plain_number(limit, 1)} arcsec)."
            )

    impatch = ImPatch(
        locunits=locunits,
        x=x,
        y=y,
        boxunits=boxunits,
        width=box[0],
        height=box[1],
        t_ref=Time(t_ref).utc.isot,
        tracking=tracking,
        register=register,
        crop=crop,
    )
    return impatch, box_pixels


def _box_kind(size):
    """im_patch's boxunits for a size: u.deg means degrees on the Sun, other angles arcsec."""
    if size.unit == u.pix:
        return "pixels"
    if size.unit == u.deg:
        return "degrees"
    return "arcsec"


def _obstime(coord):
    return getattr(coord, "obstime", None)
