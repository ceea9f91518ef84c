"""
Series catalog and record-set engine of the offline JSOC.

Records are not stored: every series is a formula. A slotted ``T_REC`` key puts slot ``k`` at
``epoch + k * step`` on the TAI scale; each slot owns the bin ``[slot - step/2, slot + step/2)``, and a
time range takes every slot whose bin it touches (jsoc-api.md section 4). Each series lists its
*channels* (AIA wavelengths or HMI cameras); a channel has a record every ``cadence`` seconds with a
fixed small offset between the observation time and the slot, so the sparse ``aia.lev1`` series
(1 s slots, records only at each channel's exposures) uses the same machinery as the regular
``aia.lev1_euv_12s`` series.

All arithmetic is done on integer slot numbers and float seconds since 1977.01.01_00:00:00_TAI;
`~astropy.time.Time` objects are only made when a caller asks for ``Record.t_rec`` or ``Record.t_obs``,
so a query returning ten thousand records stays fast. The leap-second table is astropy's (via erfa).
"""

from __future__ import annotations

import bisect
import contextlib
import datetime
import functools
import math
import re
import time as _time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import erfa
import numpy as np
from astropy.time import Time

__all__ = [
    "MAX_RECORDS",
    "SERIES",
    "Channel",
    "Keyword",
    "Record",
    "RecordSetError",
    "Segment",
    "Series",
    "UnknownSeries",
    "format_time",
    "get_series",
    "parse_time",
    "query",
    "rs_list_body",
    "rs_summary_body",
    "series_struct",
]

#: More records than this in one record set is refused, as JSOC refuses huge record sets.
MAX_RECORDS = 100_000

_EPOCH_JD = 2443144.5  # 1977-01-01T00:00:00 (TAI) as a Julian date
_EPOCH_DATE = datetime.datetime(1977, 1, 1)
_UNIX_TO_1977 = 220924800.0  # seconds of UTC clock between 1970-01-01 and 1977-01-01


class RecordSetError(Exception):
    """
    A record-set string or request the (offline) JSOC refuses.

    Parameters
    ----------
    message : str
        The JSOC-like error text, e.g. ``"Bad record-set query"``.
    detail : str, optional
        What exactly was wrong (not part of JSOC's message).
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message if not detail else f"{message}: {detail}")
        self.message = message
        self.detail = detail


class UnknownSeries(RecordSetError):
    """
    The named series does not exist in the offline JSOC.

    Parameters
    ----------
    name : str
        The series name as given.
    """

    def __init__(self, name: str):
        super().__init__(f"Cannot export series '{name}' - it does not exist.")
        self.name = name


# ---------------------------------------------------------------------------------------------
# Time scales: seconds since 1977.01.01_00:00:00_TAI ("tai77") <-> UTC clock seconds since
# 1977-01-01T00:00:00 UTC ("utc77", no leap seconds counted, as a naive datetime).


def _leap_table() -> tuple[list[float], list[float], list[float]]:
    # Let astropy refresh erfa's table from its bundled IERS data first (no network needed).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):  # the built-in erfa table is good enough too
            Time("2020-01-01T00:00:00", scale="utc").tai  # noqa: B018
        table = erfa.leap_seconds.get()
    utc_starts, tai_starts, offsets = [], [], []
    for year, month, offset in zip(table["year"], table["month"], table["tai_utc"], strict=True):
        if year < 1972:  # the drifting pre-1972 offsets are irrelevant here
            continue
        days = (datetime.date(int(year), int(month), 1) - _EPOCH_DATE.date()).days
        utc_starts.append(days * 86400.0)
        tai_starts.append(days * 86400.0 + float(offset))
        offsets.append(float(offset))
    return utc_starts, tai_starts, offsets


_UTC_STARTS, _TAI_STARTS, _OFFSETS = _leap_table()


def _tai_minus_utc_at_utc(utc77: float) -> float:
    i = bisect.bisect_right(_UTC_STARTS, utc77) - 1
    return _OFFSETS[max(i, 0)]


def _utc77_to_tai77(utc77: float) -> float:
    return utc77 + _tai_minus_utc_at_utc(utc77)


def _tai77_to_utc77(tai77: float) -> tuple[float, bool]:
    """UTC clock seconds for a TAI instant, and whether it falls inside an inserted leap second."""
    i = bisect.bisect_right(_TAI_STARTS, tai77) - 1
    offset = _OFFSETS[max(i, 0)]
    nxt = i + 1
    if nxt < len(_TAI_STARTS) and _OFFSETS[nxt] > offset and tai77 >= _TAI_STARTS[nxt] - 1.0:
        # The second before the new offset takes effect is 23:59:60 of the old day.
        return tai77 - offset, True
    return tai77 - offset, False


def _now_tai77() -> float:
    return _utc77_to_tai77(_time.time() - _UNIX_TO_1977)


def _format_clock(seconds: float, decimals: int, leap: bool, layout: str, suffix: str) -> str:
    scale = 10**decimals
    ticks = round(seconds * scale)
    if leap:
        ticks -= scale  # print the leap second as :60 of the previous second's minute
    whole, frac = divmod(ticks, scale)
    stamp = (_EPOCH_DATE + datetime.timedelta(seconds=whole)).strftime(layout)
    if leap:
        stamp = stamp[:-2] + str(int(stamp[-2:]) + 1)
    if decimals:
        stamp += f".{frac:0{decimals}d}"
    return stamp + suffix


def _format_utc_z(tai77: float, decimals: int = 0) -> str:
    utc77, leap = _tai77_to_utc77(tai77)
    return _format_clock(utc77, decimals, leap, "%Y-%m-%dT%H:%M:%S", "Z")


def _format_tai(tai77: float, decimals: int = 0) -> str:
    return _format_clock(tai77, decimals, False, "%Y.%m.%d_%H:%M:%S", "_TAI")


def _format_iso_utc(tai77: float, decimals: int = 2) -> str:
    utc77, leap = _tai77_to_utc77(tai77)
    return _format_clock(utc77, decimals, leap, "%Y-%m-%dT%H:%M:%S", "")


def _time_from_tai77(tai77: float) -> Time:
    days, rest = divmod(tai77, 86400.0)
    t = Time(_EPOCH_JD + days, rest / 86400.0, format="jd", scale="tai")
    t.format = "isot"
    return t


def _tai77_from_time(t: Time) -> float:
    tai = t.tai
    return float((tai.jd1 - _EPOCH_JD) * 86400.0 + tai.jd2 * 86400.0)


_JSOC_TIME = re.compile(
    r"(?P<y>\d{4})\.(?P<mo>\d{1,2})\.(?P<d>\d{1,2})"
    r"(?:_(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2}(?:\.\d*)?))?)?"
    r"(?:_(?P<zone>[A-Za-z]+)|(?P<z>Z))?"  # DRMS prints one-letter zones without "_" (...00:00Z)
)
_ISO_TIME = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}(?:\.\d*)?))?)?"
    r"(?:(?P<z>Z)|_(?P<zone>[A-Za-z]+))?"
)
_UTC_ZONES = {"UTC", "UT", "Z", "GMT"}
_ZONE_OFFSETS = {"TAI": 0.0, "TT": -32.184, "TDT": -32.184}


def _match_time(text: str, pos: int = 0) -> tuple[float, int] | None:
    """Parse a JSOC or ISO time at ``text[pos:]``; return (tai77 seconds, end position) or None."""
    m = _JSOC_TIME.match(text, pos) or _ISO_TIME.match(text, pos)
    if m is None:
        return None
    zone = (m.group("zone") or ("Z" if m.groupdict().get("z") else "UTC")).upper()
    try:
        days = (datetime.date(int(m["y"]), int(m["mo"]), int(m["d"])) - _EPOCH_DATE.date()).days
    except ValueError:
        return None
    hour, minute = int(m["h"] or 0), int(m["mi"] or 0)
    sec = float(m["s"] or 0.0)
    if hour > 24 or minute > 59 or sec >= 61:
        return None
    leap = sec >= 60  # 23:59:60 UTC: count from the second before, then add it back
    clock = days * 86400.0 + hour * 3600 + minute * 60 + (sec - 1 if leap else sec)
    if zone in _UTC_ZONES:
        tai77 = _utc77_to_tai77(clock) + (1 if leap else 0)
    elif zone in _ZONE_OFFSETS:
        tai77 = clock + _ZONE_OFFSETS[zone] + (1 if leap else 0)
    else:
        return None
    return tai77, m.end()


def parse_time(text: str) -> Time:
    """
    Parse a time the way JSOC reads one in a record set.

    Parameters
    ----------
    text : str
        ``2014.02.05_08:00:00_TAI``, ``2014.02.05_08:00_TAI``, ``2014.02.05_8:00`` (no zone = UTC),
        ``2014-02-05T08:00:01Z``, ``2014-02-05T08:00:01``, ``2014.02.05_08:00:00_UTC`` ...

    Returns
    -------
    astropy.time.Time
        On the TAI scale.

    Raises
    ------
    RecordSetError
        If the text is not a time.
    """
    found = _match_time(text.strip())
    if found is None or found[1] != len(text.strip()):
        raise RecordSetError("Bad record-set query", f"cannot parse time {text!r}")
    return _time_from_tai77(found[0])


def format_time(t: Time, time_format: str = "utc_z", decimals: int = 0) -> str:
    """
    Print a time as JSOC prints T_REC (``"utc_z"``: 2014-02-05T08:00:01Z, ``"tai"``: 2014.02.05_08:00:00_TAI).

    Parameters
    ----------
    t : astropy.time.Time
        A scalar time.
    time_format : {"utc_z", "tai"}
        The series' time format.
    decimals : int
        Digits of fractional seconds.

    Returns
    -------
    str
    """
    tai77 = _tai77_from_time(t)
    return _format_tai(tai77, decimals) if time_format == "tai" else _format_utc_z(tai77, decimals)


@functools.lru_cache(maxsize=4096)
def _carrington_at_hour(hour: int) -> float:
    from sunpy.coordinates.sun import carrington_rotation_number

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(carrington_rotation_number(_time_from_tai77(hour * 3600.0)))


def _carrington_rotation(tai77: float) -> float:
    # Linear between cached whole hours: the rotation number changes smoothly (~1.5e-3 per hour).
    hour = math.floor(tai77 / 3600.0)
    a, b = _carrington_at_hour(hour), _carrington_at_hour(hour + 1)
    return a + (b - a) * (tai77 / 3600.0 - hour)


# ---------------------------------------------------------------------------------------------
# Series definitions


@dataclass(frozen=True)
class Channel:
    """
    One stream of exposures in a series (an AIA wavelength or an HMI camera).

    Attributes
    ----------
    value : int
        The second prime key's value (WAVELNTH for AIA, CAMERA for HMI).
    cadence : float
        Seconds between this channel's records.
    offset : float
        T_OBS minus the T_REC slot of the regular series, in seconds (each channel its own, so the
        1 s slots of aia.lev1 differ between channels).
    exptime : float
        Exposure time in seconds.
    camera : int
        The instrument camera number (INSTRUME "AIA_<camera>", CAMERA keyword).
    wavelength : int
        WAVELNTH keyword value.
    """

    value: int
    cadence: float
    offset: float
    exptime: float
    camera: int
    wavelength: int


@dataclass(frozen=True)
class Segment:
    """A segment of a series, as series_struct describes it, plus the stored file name."""

    name: str
    filename: str
    type: str = "int"
    units: str = "DN"
    protocol: str = "fits"
    dims: str = "4096x4096"
    note: str = ""
    cparms: str = "compress Rice"
    bzero: str = "0"
    bscale: str = "1"


@dataclass(frozen=True)
class Keyword:
    """A keyword of a series, as series_struct describes it."""

    name: str
    type: str
    units: str = "none"
    note: str = ""
    recscope: str = "variable"
    defval: str = ""


@dataclass(frozen=True)
class Series:
    """
    A DRMS series of the offline JSOC.

    The first nine attributes are the shared contract; the rest describe channels, segments,
    keywords and the series_struct metadata.
    """

    name: str
    primekeys: tuple[str, ...]
    step: float
    epoch: str
    time_format: str
    segments: tuple[str, ...]
    instrument: str
    wavelengths: tuple[int, ...]
    cadence: float
    channels: tuple[Channel, ...] = ()
    segment_info: tuple[Segment, ...] = ()
    keywords: tuple[Keyword, ...] = ()
    telescope: str = "SDO/AIA"
    note: str = ""
    retention: int = 10000
    unitsize: int = 32
    archive: int = 1
    tapegroup: int = 1
    data_start: str = "2010.05.01_00:00:00_UTC"
    sunum_base: int = 500_000_000
    sum_partition: int = 12
    links: tuple[dict, ...] = field(default=(), compare=False)
    time_decimals: int = 2  # digits of T_OBS seconds
    kind: str = "slotted"  # "slotted" (records per channel and slot), "harp" or "noaa" (tables)
    time_key: str = "T_REC"  # the prime key holding a time

    @functools.cached_property
    def epoch_tai77(self) -> float:
        """The T_REC epoch in seconds since 1977.01.01_00:00:00_TAI."""
        return _match_time(self.epoch)[0]

    @functools.cached_property
    def first_index(self) -> int:
        """The first slot with data (2010-05-01)."""
        return math.ceil((_match_time(self.data_start)[0] - self.epoch_tai77) / self.step)

    @property
    def second_key(self) -> str | None:
        """The prime key after T_REC, if any."""
        return self.primekeys[1] if len(self.primekeys) > 1 else None

    @property
    def sparse(self) -> bool:
        """True when the slots are finer than the exposures (aia.lev1: 1 s slots, FSN prime key)."""
        return self.kind == "slotted" and self.second_key not in (None, "WAVELNTH", "CAMERA")

    def segment(self, name: str) -> Segment:
        """
        The segment named ``name`` (case-insensitive).

        Raises
        ------
        KeyError
            If the series has no such segment.
        """
        for seg in self.segment_info:
            if seg.name.lower() == name.lower():
                return seg
        raise KeyError(name)

    def keyword_info(self, name: str) -> Keyword | None:
        """The keyword description named ``name`` (case-insensitive), or None."""
        for kw in self.keywords:
            if kw.name.lower() == name.lower():
                return kw
        return None

    def slot_index(self, tai77: float) -> int:
        """The slot whose bin holds a TAI time (seconds since 1977)."""
        return math.floor((tai77 - self.epoch_tai77) / self.step + 0.5)

    def slot_time(self, index: int) -> float:
        """The TAI time (seconds since 1977) of slot ``index``."""
        return self.epoch_tai77 + index * self.step

    def format_trec(self, tai77: float) -> str:
        """T_REC as jsoc_info prints it for this series."""
        return _format_tai(tai77) if self.time_format == "tai" else _format_utc_z(tai77)

    def format_tobs(self, tai77: float) -> str:
        """T_OBS as jsoc_info prints it for this series."""
        if self.time_format == "tai":
            return _format_tai(tai77, self.time_decimals)
        return _format_utc_z(tai77, self.time_decimals)


_AIA_CAMERA = {94: 4, 131: 1, 171: 3, 193: 2, 211: 2, 304: 4, 335: 1, 1600: 3, 1700: 3, 4500: 3}
# (wavelength, T_OBS - T_REC in s, exposure time in s). Offsets are chosen so that the rounded
# exposure times differ between all nine channels modulo 12 s (aia.lev1's 1 s T_REC slots).
_AIA_EUV = (
    (94, -2.88, 2.9),
    (131, -1.62, 2.9),
    (171, 0.84, 2.0),
    (193, 2.04, 2.0),
    (211, -0.62, 2.9),
    (304, 3.16, 2.9),
    (335, 4.20, 2.9),
)
_AIA_UV = ((1600, 5.12, 2.9), (1700, -5.84, 1.0))


def _aia_channels(table, cadence) -> tuple[Channel, ...]:
    return tuple(Channel(w, cadence, off, exp, _AIA_CAMERA[w], w) for w, off, exp in table)


_COMMON_KEYWORDS = (
    Keyword("T_REC", "time", "TAI", "Slot time", "ts_eq"),
    Keyword("T_OBS", "time", "TAI", "Observation time"),
    Keyword("DATE-OBS", "string", "none", "Start of exposure (UTC)"),
    Keyword("TELESCOP", "string", "none", "Telescope", "constant"),
    Keyword("INSTRUME", "string", "none", "Instrument and camera"),
    Keyword("WAVELNTH", "int", "angstrom", "Wavelength"),
    Keyword("WAVEUNIT", "string", "none", "Wavelength unit", "constant"),
    Keyword("CAMERA", "int", "none", "Camera"),
    Keyword("EXPTIME", "double", "s", "Exposure duration"),
    Keyword("QUALITY", "int", "none", "Quality flags"),
    Keyword("FSN", "int", "none", "Filtergram sequence number"),
    Keyword("CAR_ROT", "int", "none", "Carrington rotation number of disk centre"),
    Keyword("T_REC_step", "double", "secs", "T_REC step", "constant"),
    Keyword("T_REC_epoch", "time", "TAI", "T_REC epoch", "constant"),
)

_WCS_KEYWORDS = (
    Keyword("CTYPE1", "string", "none", "Coordinate type of the first axis"),
    Keyword("CTYPE2", "string", "none", "Coordinate type of the second axis"),
)
_HMI_KEYWORDS = tuple(k for k in _COMMON_KEYWORDS if k.name != "FSN") + _WCS_KEYWORDS
_SHARP_KEYWORDS = (
    Keyword("HARPNUM", "int", "none", "HARP identifier"),
    *(k for k in _HMI_KEYWORDS if k.name not in ("CAMERA", "WAVELNTH", "WAVEUNIT")),
    Keyword("NOAA_AR", "int", "none", "NOAA active region number that best matches the HARP"),
    Keyword("NOAA_NUM", "int", "none", "Number of NOAA active regions in the HARP"),
    Keyword("CRVAL1", "float", "degree", "Carrington longitude of the patch centre"),
    Keyword("CRVAL2", "float", "degree", "Latitude of the patch centre"),
    Keyword("CDELT1", "float", "degree", "Pixel size (longitude)"),
    Keyword("CDELT2", "float", "degree", "Pixel size (latitude, CEA)"),
    Keyword("CUNIT1", "string", "none", "degree"),
    Keyword("CUNIT2", "string", "none", "degree"),
)
_NOAA_KEYWORDS = (
    Keyword("ObservationTime", "time", "Z", "Time of the SWPC Solar Region Summary"),
    Keyword("RegionNumber", "int", "none", "NOAA (SWPC) region number"),
    Keyword("ZurichClass", "string", "none", "Modified Zurich sunspot group classification"),
    Keyword("MagneticType", "string", "none", "Magnetic classification of the sunspot group"),
    Keyword("SpotCount", "int", "none", "Number of visible spots"),
    Keyword("Area", "int", "millionths of hemisphere", "Group area corrected for foreshortening"),
    Keyword("LatitudeHG", "int", "degree", "Heliographic latitude"),
    Keyword("LongitudeHG", "int", "degree", "Carrington longitude"),
    Keyword("LongitudeCM", "int", "degree", "Longitude west of the central meridian"),
    Keyword("LongitudinalExtent", "int", "degree", "Longitudinal extent"),
)

_AIA_SEGMENTS = (
    Segment("image", "image_lev1.fits", "int", "DN", "fits", "4096x4096", "AIA level 1 image"),
    Segment(
        "spikes",
        "spikes.fits",
        "int",
        "DN",
        "fits",
        "VARxVAR",
        "Cosmic-ray spikes removed",
        "compress Rice",
        "0",
        "1",
    ),
)
_HMI_IC_SEGMENTS = (
    Segment(
        "continuum",
        "continuum.fits",
        "int",
        "DN/s",
        "fits",
        "4096x4096",
        "Continuum intensity",
        "compress Rice,0",
        "97304",
        "3",
    ),
)
# The SHARP CEA segments (jsoc-api.md section 4); patches are about 600 x 400 pixels.
_SHARP_SEGMENTS = tuple(
    Segment(name, f"{name}.fits", kind, units, "fits", "VARxVAR", note)
    for name, kind, units, note in (
        ("magnetogram", "int", "Mx/cm^2", "Line-of-sight magnetic field"),
        ("bitmap", "char", "none", "Mask for the patch"),
        ("Dopplergram", "int", "m/s", "Dopplergram"),
        ("continuum", "int", "DN/s", "Intensitygram"),
        ("Br", "int", "Mx/cm^2", "Radial field"),
        ("Bt", "int", "Mx/cm^2", "Theta component of the field"),
        ("Bp", "int", "Mx/cm^2", "Phi component of the field"),
        ("Br_err", "int", "Mx/cm^2", "Error in Br"),
        ("Bt_err", "int", "Mx/cm^2", "Error in Bt"),
        ("Bp_err", "int", "Mx/cm^2", "Error in Bp"),
        ("conf_disambig", "char", "none", "Confidence of the disambiguation"),
    )
)
_HMI_M_SEGMENTS = (
    Segment(
        "magnetogram",
        "magnetogram.fits",
        "int",
        "Gauss",
        "fits",
        "4096x4096",
        "Line-of-sight magnetogram",
        "compress Rice,0",
        "0",
        "0.1",
    ),
)


def _series_table() -> dict[str, Series]:
    # One entry per series; issue 3 adds hmi.Ic_45s, hmi.M_720s, su_rsb.NOAA_ActiveRegions here.
    aia_epoch = "1977.01.01_00:00:00_TAI"
    hmi_epoch = "1993.01.01_00:00:00_TAI"
    lev1_link = ({"name": "lev1", "target": "aia.lev1", "kind": "DYNAMIC", "note": "Level 1 record"},)
    table = [
        Series(
            "aia.lev1_euv_12s",
            ("T_REC", "WAVELNTH"),
            12.0,
            aia_epoch,
            "utc_z",
            ("image", "spikes"),
            "AIA",
            tuple(w for w, _, _ in _AIA_EUV),
            12.0,
            _aia_channels(_AIA_EUV, 12.0),
            _AIA_SEGMENTS,
            _COMMON_KEYWORDS + _WCS_KEYWORDS,
            note="AIA Level 1, 12 second cadence",
            sunum_base=700_000_000,
            links=lev1_link,
        ),
        Series(
            "aia.lev1_uv_24s",
            ("T_REC", "WAVELNTH"),
            24.0,
            aia_epoch,
            "utc_z",
            ("image", "spikes"),
            "AIA",
            tuple(w for w, _, _ in _AIA_UV),
            24.0,
            _aia_channels(_AIA_UV, 24.0),
            _AIA_SEGMENTS,
            _COMMON_KEYWORDS + _WCS_KEYWORDS,
            note="AIA Level 1, 24 second cadence",
            sunum_base=710_000_000,
            links=lev1_link,
        ),
        Series(
            "aia.lev1",
            ("T_REC", "FSN"),
            1.0,
            aia_epoch,
            "utc_z",
            ("image", "spikes"),
            "AIA",
            tuple(w for w, _, _ in _AIA_EUV + _AIA_UV),
            12.0,
            _aia_channels(_AIA_EUV, 12.0) + _aia_channels(_AIA_UV, 24.0),
            _AIA_SEGMENTS,
            _COMMON_KEYWORDS + _WCS_KEYWORDS,
            note="AIA Level 1",
            sunum_base=720_000_000,
        ),
        Series(
            "hmi.M_45s",
            ("T_REC", "CAMERA"),
            45.0,
            "1993.01.01_00:00:00_TAI",
            "tai",
            ("magnetogram",),
            "HMI",
            (),
            45.0,
            (Channel(2, 45.0, 0.0, 0.135, 2, 6173),),
            _HMI_M_SEGMENTS,
            _HMI_KEYWORDS,
            telescope="SDO/HMI",
            note="Line-of-sight magnetograms with a cadence of 45 seconds.",
            sunum_base=800_000_000,
            sum_partition=58,
        ),
        Series(
            "hmi.Ic_45s",
            ("T_REC", "CAMERA"),
            45.0,
            hmi_epoch,
            "tai",
            ("continuum",),
            "HMI",
            (),
            45.0,
            (Channel(2, 45.0, 0.0, 0.135, 2, 6173),),
            _HMI_IC_SEGMENTS,
            _HMI_KEYWORDS,
            telescope="SDO/HMI",
            note="Continuum intensities with a cadence of 45 seconds.",
            sunum_base=810_000_000,
            sum_partition=58,
        ),
        Series(
            "hmi.M_720s",
            ("T_REC", "CAMERA"),
            720.0,
            hmi_epoch,
            "tai",
            ("magnetogram",),
            "HMI",
            (),
            720.0,
            # 720 s observables combine both cameras; CAMERA is 3 (file names "...TAI.3.magnetogram.fits").
            (Channel(3, 720.0, 0.0, 0.135, 3, 6173),),
            _HMI_M_SEGMENTS,
            _HMI_KEYWORDS,
            telescope="SDO/HMI",
            note="Line-of-sight magnetograms with a cadence of 720 seconds.",
            sunum_base=820_000_000,
            sum_partition=58,
        ),
        Series(
            "hmi.sharp_cea_720s",
            ("HARPNUM", "T_REC"),
            720.0,
            hmi_epoch,
            "tai",
            tuple(seg.name for seg in _SHARP_SEGMENTS),
            "HMI",
            (),
            720.0,
            (Channel(3, 720.0, 0.0, 0.135, 3, 6173),),
            _SHARP_SEGMENTS,
            _SHARP_KEYWORDS,
            telescope="SDO/HMI",
            note="Spaceweather HMI Active Region Patches (SHARPs), CEA projection.",
            sunum_base=830_000_000,
            sum_partition=58,
            kind="harp",
        ),
        Series(
            "su_rsb.NOAA_ActiveRegions",
            ("ObservationTime", "RegionNumber"),
            86400.0,
            "1996.01.01_00:00:00_UTC",
            "utc_z",
            (),
            "NOAA",
            (),
            86400.0,
            (),
            (),
            _NOAA_KEYWORDS,
            telescope="",
            note="NOAA SWPC Solar Region Summaries, one record per region and day.",
            unitsize=1,
            archive=0,
            tapegroup=0,
            kind="noaa",
            time_key="ObservationTime",
        ),
    ]
    return {s.name.lower(): s for s in table}


#: The series of the offline JSOC, keyed by lower-case name.
SERIES: dict[str, Series] = _series_table()


def get_series(name: str) -> Series:
    """
    Look up a series by name, case-insensitively.

    Parameters
    ----------
    name : str
        e.g. ``"aia.lev1_euv_12s"``, ``"HMI.m_45s"``.

    Returns
    -------
    Series

    Raises
    ------
    UnknownSeries
        If there is no such series.
    """
    try:
        return SERIES[name.strip().lower()]
    except KeyError:
        raise UnknownSeries(name) from None


# ---------------------------------------------------------------------------------------------
# Records

_LAZY = ("t_rec", "t_obs")


@dataclass(frozen=True, eq=False, repr=False)
class Record:
    """
    One record of a series.

    ``t_rec`` and ``t_obs`` are `~astropy.time.Time` objects (TAI scale) made on first access.
    Records compare equal when series and record number agree.
    """

    series: Series
    t_rec: Time
    t_obs: Time
    wavelength: int | None
    camera: int | None
    fsn: int | None
    recnum: int
    channel: Channel | None = field(default=None, compare=False)
    extra: dict | None = field(default=None, compare=False)  # keyword strings of table series

    def __post_init__(self):
        # Built directly (not by query): derive the float seconds from the given times.
        object.__setattr__(self, "_rec_s", _tai77_from_time(self.t_rec))
        object.__setattr__(self, "_obs_s", _tai77_from_time(self.t_obs))

    @classmethod
    def _make(cls, series, rec_s, obs_s, channel, *, fsn, recnum, extra=None) -> Record:
        self = object.__new__(cls)
        self.__dict__.update(
            series=series,
            _rec_s=rec_s,
            _obs_s=obs_s,
            channel=channel,
            fsn=fsn,
            recnum=recnum,
            wavelength=channel.wavelength if series.instrument == "AIA" else None,
            camera=channel.value if series.second_key == "CAMERA" else None,
            extra=extra,
        )
        return self

    def __getattr__(self, name):
        # Only reached for t_rec/t_obs of records made by query(): create the Time lazily.
        if name in _LAZY:
            value = _time_from_tai77(self.__dict__["_rec_s" if name == "t_rec" else "_obs_s"])
            self.__dict__[name] = value
            return value
        raise AttributeError(name)

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        return self.series.name == other.series.name and self.recnum == other.recnum

    def __hash__(self):
        return hash((self.series.name, self.recnum))

    def __repr__(self):
        return f"<Record {self.spec} recnum={self.recnum}>"

    @property
    def tai_seconds(self) -> float:
        """T_REC in seconds since 1977.01.01_00:00:00_TAI."""
        return self._rec_s

    @property
    def obs_seconds(self) -> float:
        """T_OBS in seconds since 1977.01.01_00:00:00_TAI."""
        return self._obs_s

    def _channel(self) -> Channel:
        if self.channel is not None:
            return self.channel
        value = self.wavelength if self.series.instrument == "AIA" else self.camera
        for ch in self.series.channels:
            if value in (ch.value, ch.wavelength):
                return ch
        return self.series.channels[0]

    def _prime_value(self, key: str) -> str:
        if key == "T_REC":
            return self.series.format_trec(self._rec_s)
        return self.keyword(key)

    @property
    def spec(self) -> str:
        """The record specification, e.g. ``aia.lev1_euv_12s[2014-02-05T08:00:01Z][171]``."""
        return self.series.name + "".join(f"[{self._prime_value(k)}]" for k in self.series.primekeys)

    @property
    def sunum(self) -> int:
        """The storage unit number holding this record's files."""
        return self.series.sunum_base + self.recnum // self.series.unitsize

    def segment_path(self, segment: str) -> str:
        """
        The SUMS path of one segment file, e.g. ``/SUM12/D700001234/S00005/image_lev1.fits``.

        Raises
        ------
        KeyError
            If the series has no such segment.
        """
        seg = self.series.segment(segment)
        slot = self.recnum % self.series.unitsize
        return f"/SUM{self.series.sum_partition}/D{self.sunum}/S{slot:05d}/{seg.filename}"

    def keyword(self, name: str) -> str:
        """
        The value of a keyword as jsoc_info prints it.

        Parameters
        ----------
        name : str
            Keyword name (case-insensitive), or ``*recnum*``, ``*sunum*``, ``*spec*``, ``*online*``.

        Returns
        -------
        str
            ``"Invalid KeyLink"`` for a keyword the series does not have.
        """
        key = name.strip()
        upper = key.upper()
        special = {
            "*RECNUM*": lambda: str(self.recnum),
            "*SUNUM*": lambda: str(self.sunum),
            "*SPEC*": lambda: self.spec,
            "*ONLINE*": lambda: "Y",
            "*RETAIN*": lambda: "2099.12.31",
            "*ARCHIVE*": lambda: "1",
        }
        if upper in special:
            return special[upper]()
        if self.series.keyword_info(key) is None:
            return "Invalid KeyLink"
        if self.extra and upper in self.extra:
            return self.extra[upper]
        ch = self._channel()
        hmi = self.series.instrument == "HMI"
        if upper == "T_REC":
            return self.series.format_trec(self._rec_s)
        if upper == "T_OBS":
            return self.series.format_tobs(self._obs_s)
        if upper == "DATE-OBS":
            return _format_iso_utc(self._obs_s - ch.exptime / 2)
        if upper == "TELESCOP":
            return self.series.telescope
        if upper == "INSTRUME":
            if hmi:
                return "HMI_COMBINED" if ch.camera == 3 else f"HMI_FRONT{ch.camera}"
            return f"AIA_{ch.camera}"
        if upper in ("CTYPE1", "CTYPE2"):
            return "HPLN-TAN" if upper == "CTYPE1" else "HPLT-TAN"
        if upper == "WAVELNTH":
            return f"{ch.wavelength}.0" if hmi else str(ch.wavelength)
        if upper == "WAVEUNIT":
            return "angstrom"
        if upper == "CAMERA":
            return str(ch.camera)
        if upper == "EXPTIME":
            return f"{ch.exptime:g}"
        if upper == "QUALITY":
            return "0x00000000"
        if upper == "FSN":
            return str(self.fsn if self.fsn is not None else _fsn(self._obs_s))
        if upper == "CAR_ROT":
            return str(int(_carrington_rotation(self._obs_s)))
        if upper == "T_REC_STEP":
            return f"{self.series.step:g}"
        if upper == "T_REC_EPOCH":
            return self.series.epoch
        return "Invalid KeyLink"  # pragma: no cover - every listed keyword is handled above


_FSN_BASE = math.floor(_match_time("2010.05.01_00:00:00_UTC")[0]) - 1000


def _fsn(obs_tai77):
    """Frame serial number: the exposure's 1 s aia.lev1 slot, counted from shortly before 2010-05-01."""
    if np.ndim(obs_tai77):
        return np.floor(np.asarray(obs_tai77) + 0.5).astype(np.int64) - _FSN_BASE
    return math.floor(obs_tai77 + 0.5) - _FSN_BASE


# ---------------------------------------------------------------------------------------------
# Record-set parsing

_NAME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.]*)\s*")
_DURATION = re.compile(r"([0-9.]+)([smhd])")
_DUR_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _bad(detail: str) -> RecordSetError:
    return RecordSetError("Bad record-set query", detail)


def _parse_duration(text: str, pos: int) -> tuple[float, int]:
    m = _DURATION.match(text, pos)
    if m is None:
        raise _bad(f"expected a duration such as 1h or 60s at {text[pos:]!r}")
    # JSOC truncates the number to an integer ("(int)strtod").
    return int(float(m[1])) * _DUR_UNITS[m[2]], m.end()


@dataclass
class _Range:
    kind: str  # "single", "range", "duration", "first", "last"
    start: float = 0.0
    end: float = 0.0  # end value (range) or duration (duration)
    skip: float | None = None


def _parse_time_ranges(text: str) -> list[_Range]:
    out, pos = [], 0
    while True:
        if text.startswith(("$", "^"), pos):
            out.append(_Range("last" if text[pos] == "$" else "first"))
            pos += 1
        else:
            found = _match_time(text, pos)
            if found is None:
                raise _bad(f"cannot parse time at {text[pos:]!r}")
            rng = _Range("single", found[0])
            pos = found[1]
            if text.startswith("-", pos):
                end = _match_time(text, pos + 1)
                if end is None:
                    raise _bad(f"cannot parse end time at {text[pos + 1 :]!r}")
                rng.kind, rng.end, pos = "range", end[0], end[1]
            elif text.startswith("/", pos):
                rng.kind = "duration"
                rng.end, pos = _parse_duration(text, pos + 1)
            if rng.kind != "single" and text.startswith("@", pos):
                rng.skip, pos = _parse_duration(text, pos + 1)
            out.append(rng)
        if pos == len(text):
            return out
        if text[pos] != ",":
            raise _bad(f"unexpected {text[pos:]!r} in time filter")
        pos += 1


_NUMBER = r"[-+]?\d+(?:\.\d*)?"
_VALUE_ITEM = re.compile(
    rf"\s*(?:(?P<mark>[$^])|(?P<a>{_NUMBER})\s*(?:(?P<op>[-/])\s*(?P<b>{_NUMBER}))?)\s*$"
)


def _parse_value_ranges(text: str) -> list[_Range]:
    out = []
    for item in text.split(","):
        m = _VALUE_ITEM.match(item)
        if m is None:
            raise _bad(f"cannot parse value {item!r}")
        if m["mark"]:
            out.append(_Range("last" if m["mark"] == "$" else "first"))
        elif m["op"] == "-":
            out.append(_Range("range", float(m["a"]), float(m["b"])))
        elif m["op"] == "/":
            out.append(_Range("duration", float(m["a"]), float(m["b"])))
        else:
            out.append(_Range("single", float(m["a"])))
    return out


def _value_mask(values: np.ndarray, ranges: list[_Range], all_values: np.ndarray) -> np.ndarray:
    mask = np.zeros(values.shape, bool)
    for r in ranges:
        if r.kind == "first":
            mask |= values == all_values.min()
        elif r.kind == "last":
            mask |= values == all_values.max()
        elif r.kind == "single":
            mask |= values == r.start
        elif r.kind == "range":
            mask |= (values >= r.start) & (values <= r.end)
        else:
            mask |= (values >= r.start) & (values < r.start + r.end)
    return mask


_WHERE_TERM = re.compile(
    rf"^\(?\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=|==|!=|<>|<=|>=|<|>)\s*('?)(0x[0-9a-fA-F]+|{_NUMBER})\3\s*\)?$"
)
_WHERE_IN = re.compile(r"^\(?\s*([A-Za-z_][A-Za-z0-9_]*)\s+(not\s+)?in\s*\(([^)]*)\)\s*\)?$", re.I)
_OPS = {
    "=": np.equal,
    "==": np.equal,
    "!=": np.not_equal,
    "<>": np.not_equal,
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
}


def _parse_where(clause: str) -> list[list[tuple[str, object]]]:
    """A where clause as OR of ANDs of (KEY, predicate); terms we cannot read are dropped (true)."""
    alternatives = []
    for alt in re.split(r"\s+or\s+", clause.strip(), flags=re.I):
        terms = []
        for raw in re.split(r"\s+and\s+", alt.strip(), flags=re.I):
            term = raw.strip()
            if m := _WHERE_TERM.match(term):
                value = int(m[4], 16) if m[4].lower().startswith("0x") else float(m[4])
                op = _OPS[m[2]]
                terms.append((m[1].upper(), functools.partial(lambda v, o, x: o(v, x), o=op, x=value)))
            elif m := _WHERE_IN.match(term):
                try:
                    items = [float(v.strip().strip("'")) for v in m[3].split(",") if v.strip()]
                except ValueError:
                    continue
                negate = bool(m[2])
                terms.append(
                    (
                        m[1].upper(),
                        functools.partial(
                            lambda v, items, negate: np.isin(v, items) != negate, items=items, negate=negate
                        ),
                    )
                )
        alternatives.append(terms)
    return alternatives


def _split_filters(rest: str) -> tuple[list[str], list[str] | None]:
    """Split ``[..][..]{a,b}`` into the bracket contents and the segment list."""
    filters, segments, pos = [], None, 0
    while pos < len(rest):
        ch = rest[pos]
        if ch.isspace():
            pos += 1
        elif ch == "[":
            if rest.startswith("[?", pos):
                end = rest.find("?]", pos + 2)
                if end < 0:
                    raise _bad("where clause not closed with '?]'")
                filters.append(rest[pos + 1 : end + 1])
                pos = end + 2
            else:
                end = rest.find("]", pos)
                if end < 0:
                    raise _bad("'[' without ']'")
                filters.append(rest[pos + 1 : end].strip())
                pos = end + 1
        elif ch == "{" and segments is None:
            end = rest.find("}", pos)
            if end < 0:
                raise _bad("'{' without '}'")
            segments = [s.strip() for s in rest[pos + 1 : end].split(",") if s.strip()]
            pos = end + 1
        else:
            raise _bad(f"unexpected {rest[pos:]!r}")
    return filters, segments


def _channel_indices(series: Series, ch: Channel, lo: int, hi: int) -> np.ndarray:
    """Slot indices in [lo, hi] at which channel ``ch`` has a record."""
    per = round(ch.cadence / series.step)
    residue = round(ch.offset / series.step)
    first = -((residue - lo) // per)  # ceil((lo - residue) / per)
    last = (hi - residue) // per
    if last < first:
        return np.empty(0, np.int64)
    return np.arange(first, last + 1, dtype=np.int64) * per + residue


def _channel_obs(series: Series, ch: Channel, idx: np.ndarray) -> np.ndarray:
    residue = round(ch.offset / series.step)
    return series.epoch_tai77 + (idx - residue) * series.step + ch.offset


def _now_index(series: Series) -> int:
    """The last slot that is not in the future."""
    return math.floor((_now_tai77() - series.epoch_tai77) / series.step)


def _last_index(series: Series) -> int:
    now = _now_index(series)
    best = [
        int(_channel_indices(series, ch, now - 2 * round(ch.cadence / series.step), now)[-1])
        for ch in series.channels
    ]
    return max(best)


def _first_index(series: Series) -> int:
    lo = series.first_index
    return min(
        int(_channel_indices(series, ch, lo, lo + 2 * round(ch.cadence / series.step))[0])
        for ch in series.channels
    )


def _time_windows(series: Series, ranges: list[_Range]) -> list[tuple[int, int, int]]:
    """(first slot, last slot, skip in slots) for each item of a T_REC filter."""
    windows = []
    for r in ranges:
        if r.kind in ("first", "last"):
            i = _first_index(series) if r.kind == "first" else _last_index(series)
            windows.append((i, i, 1))
            continue
        lo = series.slot_index(r.start)
        if r.kind == "single":
            hi = lo
        elif r.kind == "range":
            hi = series.slot_index(r.end)
        else:  # start/duration: half open, counted in whole slots
            hi = series.slot_index(r.start + r.end) - 1
        skip = 1
        if r.skip is not None:
            skip = max(1, round(r.skip / series.step))
        windows.append((lo, hi, skip))
    return windows


def _parse(ds: str):
    text = ds.strip()
    m = _NAME.match(text)
    if m is None:
        raise _bad(f"no series name in {ds!r}")
    series = get_series(m[1])
    rest = text[m.end() :]
    if rest and rest[0] not in "[{":
        raise _bad(f"series name must be followed by '[', found {rest!r}")
    filters, segs = _split_filters(rest)

    time_ranges: list[_Range] | None = None
    key_ranges: list[_Range] | None = None
    wheres = []
    keynum = 0
    for f in filters:
        if f.startswith("?"):
            wheres.append(_parse_where(f[1:-1]))
            continue
        if f == "":
            keynum += 1
            continue
        named = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", f, re.S)
        upper_keys = {k.upper(): k for k in series.primekeys}
        if named and named[1].upper() in upper_keys:
            key, value = upper_keys[named[1].upper()], named[2].strip()
        elif named and not _match_time(f):
            raise _bad(f"'{named[1]}' is not a primary index for series '{series.name}'")
        else:
            if keynum >= len(series.primekeys):
                raise _bad(
                    f"More primary keys are implied than exist ({len(series.primekeys)}) "
                    f"for series {series.name}"
                )
            key, value = series.primekeys[keynum], f
            keynum += 1
        if key == series.time_key:
            time_ranges = _parse_time_ranges(value)
        else:
            key_ranges = _parse_value_ranges(value)

    if segs is None:
        segments = list(series.segments)
    else:
        segments = []
        for s in segs:
            try:
                segments.append(series.segment(s).name)
            except KeyError:
                raise _bad(f"'{s}' is not a segment of series '{series.name}'") from None
    return series, time_ranges, key_ranges, wheres, segments


def _channel_constant(series: Series, ch: Channel, key: str):
    return {
        "WAVELNTH": ch.wavelength,
        "CAMERA": ch.camera if series.instrument == "AIA" else ch.value,
        "EXPTIME": ch.exptime,
        "QUALITY": 0,
    }.get(key)


def _where_mask(series, ch, wheres, fsn) -> np.ndarray:
    mask = np.ones(fsn.shape, bool)
    for alternatives in wheres:
        any_mask = np.zeros(fsn.shape, bool)
        for terms in alternatives:
            all_mask = np.ones(fsn.shape, bool)
            for key, pred in terms:
                value = fsn if key == "FSN" else _channel_constant(series, ch, key)
                if value is None:
                    continue  # unknown to the offline JSOC: treat as true
                all_mask &= np.broadcast_to(pred(value), fsn.shape)
            any_mask |= all_mask
        mask &= any_mask
    return mask


def query(ds: str) -> tuple[list[Record], list[str]]:
    """
    Evaluate a JSOC record-set string.

    Parameters
    ----------
    ds : str
        e.g. ``aia.lev1_euv_12s[2014.02.05_08:00:00_TAI/8h@60s][171,193]{image}``,
        ``hmi.M_45s[2014-02-05T08:00:00Z-2014-02-05T09:00:00Z][2]``,
        ``aia.lev1[2014.02.05_08:00/1m][? WAVELNTH=171 ?]``, ``aia.lev1_euv_12s[$][171]``.

    Returns
    -------
    records : list of Record
        Sorted by T_REC, then by the second prime key.
    segments : list of str
        The segments asked for in ``{...}``, or all segments of the series.

    Raises
    ------
    UnknownSeries
        If the series does not exist.
    RecordSetError
        For a record set JSOC would refuse (bad syntax, too many records).
    """
    series, time_ranges, key_ranges, wheres, segments = _parse(ds)
    if series.kind == "noaa":
        return _query_noaa(series, time_ranges, key_ranges, wheres), segments
    if series.kind == "harp":
        return _query_harp(series, time_ranges, key_ranges, wheres), segments
    if time_ranges is None:
        windows = [(_first_index(series), _last_index(series), 1)]
    else:
        windows = _time_windows(series, time_ranges)
    first_ok, last_ok = series.first_index, _now_index(series)

    channels = list(series.channels)
    if key_ranges is not None and series.second_key in ("WAVELNTH", "CAMERA"):
        values = np.array([ch.value for ch in channels], float)
        keep = _value_mask(values, key_ranges, values)
        channels = [ch for ch, k in zip(channels, keep, strict=True) if k]

    estimate = 0
    for start, stop, skip in windows:
        lo, hi = max(start, first_ok), min(stop, last_ok)
        if hi >= lo:
            estimate += sum((hi - lo) // (round(ch.cadence / series.step) * skip) + 1 for ch in channels)
    if estimate > MAX_RECORDS:
        raise RecordSetError(
            "Can not open RecordSet, bad query or too many records", f"{estimate} records in {ds!r}"
        )

    parts = []  # (slot indices, obs seconds, fsn, channel position)
    for pos, ch in enumerate(channels):
        chunks = []
        for lo, hi, skip in windows:
            idx = _channel_indices(series, ch, max(lo, first_ok), min(hi, last_ok))
            if skip > 1:
                idx = idx[(idx - lo) % skip == 0]
            chunks.append(idx)
        idx = np.unique(np.concatenate(chunks)) if chunks else np.empty(0, np.int64)
        obs = _channel_obs(series, ch, idx)
        fsn = _fsn(obs) if series.instrument == "AIA" else np.zeros(idx.shape, np.int64)
        mask = np.ones(idx.shape, bool)
        if key_ranges is not None and series.sparse:
            mask &= _value_mask(fsn, key_ranges, fsn if len(fsn) else np.zeros(1))
        if wheres:
            mask &= _where_mask(series, ch, wheres, fsn)
        parts.append((idx[mask], obs[mask], fsn[mask], np.full(mask.sum(), pos)))

    if not parts:
        return [], segments
    idx, obs, fsn, chpos = (np.concatenate(p) for p in zip(*parts, strict=True))
    second = fsn if series.sparse else np.array([ch.value for ch in channels])[chpos]
    order = np.lexsort((second, idx))
    nchan = len(series.channels)
    chan_number = {ch.value: i for i, ch in enumerate(series.channels)}
    records = []
    for i in order:
        ch = channels[chpos[i]]
        slot = int(idx[i])
        if series.sparse:
            recnum = int(fsn[i])
        else:
            recnum = (slot - series.first_index) * nchan + chan_number[ch.value] + 1
        records.append(
            Record._make(
                series,
                series.slot_time(slot),
                float(obs[i]),
                ch,
                fsn=int(fsn[i]) if series.sparse else None,
                recnum=recnum,
            )
        )
    return records, segments


# ---------------------------------------------------------------------------------------------
# Table series: su_rsb.NOAA_ActiveRegions and hmi.sharp_cea_720s, built from sun.NOAA_REGIONS


def _day_seconds(day: str) -> float:
    return _match_time(day.replace("-", ".") + "_00:00:00_UTC")[0]


@functools.cache
def _noaa_rows() -> tuple[tuple[float, int, dict], ...]:
    """(ObservationTime in tai77, region number, keyword strings) of every daily record."""
    from sunpy_jsoc_cutout.testing import sun

    rows = []
    for region in sun.NOAA_REGIONS:
        lon, lat = sun.ACTIVE_REGIONS[region.feature][:2]
        t = _day_seconds(region.first_day)
        while t <= _day_seconds(region.last_day) + 1:
            l0 = sun.observer_geometry(_time_from_tai77(t)).l0
            cm = (lon - l0 + 180.0) % 360.0 - 180.0
            extent = 4 + region.area // 100
            values = {
                "OBSERVATIONTIME": _format_clock(_tai77_to_utc77(t)[0], 0, False, "%Y.%m.%d_%H:%M:%S", "Z"),
                "REGIONNUMBER": str(region.number),
                "ZURICHCLASS": region.zurich,
                "MAGNETICTYPE": region.magnetic,
                "SPOTCOUNT": str(region.spots),
                "AREA": str(region.area),
                "LATITUDEHG": str(round(lat)),
                "LONGITUDEHG": str(round(lon) % 360),
                "LONGITUDECM": str(round(cm)),
                "LONGITUDINALEXTENT": str(extent),
            }
            rows.append((t, region.number, values))
            t += 86400.0
    rows.sort(key=lambda row: (row[0], row[1]))
    return tuple(rows)


def _time_mask(times: np.ndarray, ranges: list[_Range] | None, tol: float = 0.5) -> np.ndarray:
    """Times matching a filter on a non-slotted time key (single values within ``tol`` seconds)."""
    if ranges is None:
        return np.ones(times.shape, bool)
    mask = np.zeros(times.shape, bool)
    for r in ranges:
        if r.kind in ("first", "last"):
            if len(times):
                mask |= times == (times.min() if r.kind == "first" else times.max())
        elif r.kind == "single":
            mask |= np.abs(times - r.start) <= tol
        elif r.kind == "range":
            mask |= (times >= r.start - tol) & (times <= r.end + tol)
        else:
            mask |= (times >= r.start) & (times < r.start + r.end)
    return mask


def _table_where(rows_extra: Sequence[dict], wheres) -> np.ndarray:
    """Evaluate where clauses on the numeric keyword strings of table rows (unknown keys are true)."""
    mask = np.ones(len(rows_extra), bool)
    for alternatives in wheres:
        any_mask = np.zeros(len(rows_extra), bool)
        for terms in alternatives:
            all_mask = np.ones(len(rows_extra), bool)
            for key, pred in terms:
                for i, extra in enumerate(rows_extra):
                    try:
                        value = float(extra[key])
                    except (KeyError, ValueError):
                        continue
                    all_mask[i] &= bool(pred(value))
            any_mask |= all_mask
        mask &= any_mask
    return mask


def _query_noaa(series: Series, time_ranges, key_ranges, wheres) -> list[Record]:
    rows = _noaa_rows()
    times = np.array([r[0] for r in rows])
    numbers = np.array([r[1] for r in rows], float)
    mask = _time_mask(times, time_ranges)
    if key_ranges is not None:
        mask &= _value_mask(numbers, key_ranges, numbers)
    if wheres:
        mask &= _table_where([r[2] for r in rows], wheres)
    return [
        Record._make(series, t, t, None, fsn=None, recnum=i + 1, extra=extra)
        for i, ((t, _, extra), keep) in enumerate(zip(rows, mask, strict=True))
        if keep
    ]


@functools.cache
def _harps() -> tuple[tuple[int, int, int, int, int], ...]:
    """(HARPNUM, NOAA number, feature index, first slot, last slot) of every HARP."""
    from sunpy_jsoc_cutout.testing import sun

    series = SERIES["hmi.sharp_cea_720s"]
    out = []
    for region in sun.NOAA_REGIONS:
        first = series.slot_index(_day_seconds(region.first_day))
        last = series.slot_index(_day_seconds(region.last_day) + 86400.0) - 1
        out.append((region.harpnum, region.number, region.feature, first, last))
    return tuple(sorted(out))


def _query_harp(series: Series, time_ranges, key_ranges, wheres) -> list[Record]:
    from sunpy_jsoc_cutout.testing import sun

    harps = _harps()
    numbers = np.array([h[0] for h in harps], float)
    keep = _value_mask(numbers, key_ranges, numbers) if key_ranges is not None else np.ones(len(harps), bool)
    selected = [h for h, k in zip(harps, keep, strict=True) if k]
    estimate = sum(h[4] - h[3] + 1 for h in selected)
    if time_ranges is None and estimate > MAX_RECORDS:
        raise RecordSetError("Can not open RecordSet, bad query or too many records", f"{estimate} records")
    records = []
    channel = series.channels[0]
    for harpnum, noaa, feature, first, last in selected:
        if time_ranges is None:
            idx = np.arange(first, last + 1)
        else:
            chunks = []
            for r in time_ranges:
                if r.kind in ("first", "last"):
                    chunks.append(np.array([first if r.kind == "first" else last]))
                    continue
                lo = series.slot_index(r.start)
                hi = {
                    "single": lo,
                    "range": series.slot_index(r.end),
                    "duration": series.slot_index(r.start + r.end) - 1,
                }[r.kind]
                idx = np.arange(max(lo, first), min(hi, last) + 1)
                if r.skip is not None:
                    skip = max(1, round(r.skip / series.step))
                    idx = idx[(idx - lo) % skip == 0]
                chunks.append(idx)
            idx = np.unique(np.concatenate(chunks)) if chunks else np.empty(0, np.int64)
        lon, lat = sun.ACTIVE_REGIONS[feature][:2]
        extra = {
            "HARPNUM": str(harpnum),
            "NOAA_AR": str(noaa),
            "NOAA_NUM": "1",
            "CTYPE1": "CRLN-CEA",
            "CTYPE2": "CRLT-CEA",
            "CRVAL1": f"{lon:g}",
            "CRVAL2": f"{lat:g}",
            "CDELT1": "0.03",
            "CDELT2": "0.03",
            "CUNIT1": "degree",
            "CUNIT2": "degree",
            "QUALITY": "0x00000000",
        }
        for slot in idx:
            t = series.slot_time(int(slot))
            recnum = harpnum * 100_000 + int(slot - first) + 1
            records.append(Record._make(series, t, t, channel, fsn=None, recnum=recnum, extra=extra))
    if wheres:
        mask = _table_where([r.extra for r in records], wheres)
        records = [r for r, k in zip(records, mask, strict=True) if k]
    return records


# ---------------------------------------------------------------------------------------------
# jsoc_info bodies


def series_struct(series: Series) -> dict:
    """
    The JSON body of ``jsoc_info?op=series_struct`` for a series (jsoc-api.md 3.1).

    Parameters
    ----------
    series : Series

    Returns
    -------
    dict
    """
    primekeysinfo = []
    for key in series.primekeys:
        if key == "T_REC":
            primekeysinfo.append({"name": key, "slotted": 1, "step": f"{series.step:g}"})
        else:
            primekeysinfo.append({"name": key, "slotted": 0})
    if series.kind != "slotted":
        everything, _ = query(series.name)
        first, last = everything[:1], everything[-1:]
        if series.kind == "harp":
            # Records are ordered by HARPNUM first; the interval is by record number.
            first = [min(everything, key=lambda r: r.recnum)] if everything else []
            last = [max(everything, key=lambda r: r.recnum)] if everything else []
    else:
        first_idx, last_idx = _first_index(series), _last_index(series)
        first, _ = query(f"{series.name}[{series.format_trec(series.slot_time(first_idx))}]")
        last, _ = query(f"{series.name}[{series.format_trec(series.slot_time(last_idx))}]")
    keywords = [
        {
            "name": k.name,
            "type": k.type,
            "recscope": k.recscope,
            "defval": k.defval,
            "units": k.units,
            "note": k.note,
        }
        for k in series.keywords
    ]
    segments = [
        {
            "name": s.name,
            "type": s.type,
            "units": s.units,
            "protocol": s.protocol,
            "dims": s.dims,
            "note": s.note,
        }
        for s in series.segment_info
    ]
    interval = {}
    if first and last:
        interval = {
            "FirstRecord": first[0].spec,
            "FirstRecnum": first[0].recnum,
            "LastRecord": last[-1].spec,
            "LastRecnum": last[-1].recnum,
            "MaxRecnum": last[-1].recnum,
        }
    return {
        "note": series.note,
        "retention": series.retention,
        "unitsize": series.unitsize,
        "archive": series.archive,
        "tapegroup": series.tapegroup,
        "primekeys": list(series.primekeys),
        "primekeysinfo": primekeysinfo,
        "dbindex": [f"{k}_index" if k == "T_REC" else k for k in series.primekeys],
        "keywords": keywords,
        "segments": segments,
        "links": [dict(link) for link in series.links],
        "Interval": interval,
        "runtime": 0.01,
        "status": 0,
    }


def _names(items: str | Iterable[str] | None) -> list[str]:
    if items is None:
        return []
    if isinstance(items, str):
        items = items.split(",")
    return [s.strip() for s in items if s.strip()]


def rs_list_body(
    records: Sequence[Record], keys: str | Iterable[str] | None, segments: str | Iterable[str] | None = ()
) -> dict:
    """
    The JSON body of ``jsoc_info?op=rs_list`` (jsoc-api.md 3.1): every value a string.

    Parameters
    ----------
    records : sequence of Record
    keys : str or iterable of str
        Keyword names (a comma string is split); ``**ALL**`` means every keyword of the series,
        ``**NONE**`` none. Unknown names give ``"Invalid KeyLink"`` values.
    segments : str or iterable of str
        Segment names; unknown ones give ``"InvalidSegName"`` values.

    Returns
    -------
    dict
        ``{"keywords": [{"name", "values"}], "segments": [{"name", "values", "dims", "cparms",
        "bzeros", "bscales"}], "count", "runtime", "status": 0}``
    """
    key_names = _names(keys)
    if any(k.upper() == "**ALL**" for k in key_names):
        key_names = [k.name for k in records[0].series.keywords] if records else []
    key_names = [k for k in key_names if k.upper() != "**NONE**"]
    body = {"keywords": [{"name": k, "values": [r.keyword(k) for r in records]} for k in key_names]}
    seg_names = _names(segments)
    if seg_names:
        segs = []
        for name in seg_names:
            values, dims, cparms, bzeros, bscales = [], [], [], [], []
            for r in records:
                try:
                    seg = r.series.segment(name)
                except KeyError:
                    values.append("InvalidSegName")
                    for lst in (dims, cparms, bzeros, bscales):
                        lst.append("")
                    continue
                values.append(r.segment_path(seg.name))
                dims.append(seg.dims)
                cparms.append(seg.cparms)
                bzeros.append(seg.bzero)
                bscales.append(seg.bscale)
            segs.append(
                {
                    "name": name,
                    "values": values,
                    "dims": dims,
                    "cparms": cparms,
                    "bzeros": bzeros,
                    "bscales": bscales,
                }
            )
        body["segments"] = segs
    body.update(count=len(records), runtime=0.01, status=0)
    return body


def rs_summary_body(records: Sequence[Record]) -> dict:
    """
    The JSON body of ``jsoc_info?op=rs_summary``.

    Parameters
    ----------
    records : sequence of Record

    Returns
    -------
    dict
        ``{"count": n, "runtime": ..., "status": 0}``
    """
    return {"count": len(records), "runtime": 0.01, "status": 0}
