"""
A procedural Sun for the offline JSOC.

The offline JSOC has no data files: every pixel of every AIA or HMI full-disk image is computed
on demand from the record's observation time. This module provides

- the observer geometry of a time (``B0``, ``L0``, distance, angular radius, Carrington
  rotation), from `sunpy.coordinates.sun`, with SDO treated as being at the centre of the Earth;
- the level-1 header of a record's 4096x4096 image, realistic enough that
  ``sunpy.map.Map((data, header))`` builds the right WCS and observer;
- the pixel values of any sub-array of that image: a limb-darkened disk, a faint corona and
  features fixed in Carrington coordinates (a few active regions and a coarse Carrington grid),
  so that a patch tracked at the Carrington rate keeps its features in place while a fixed one
  sees them drift;
- the spherical geometry linking CCD pixels, helioprojective angles and Carrington coordinates,
  written with numpy only (also used by `sunpy_jsoc_cutout.testing.impatch`).

All computation is pure: no files, no network.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.time import Time, TimeDelta

if TYPE_CHECKING:
    from sunpy_jsoc_cutout.testing.catalog import Record

__all__ = [
    "ACTIVE_REGIONS",
    "IMAGE_SIZE",
    "NOAA_REGIONS",
    "RSUN_REF",
    "Geometry",
    "NoaaRegion",
    "carrington_to_pixel",
    "format_tai",
    "full_disk_header",
    "observer_geometry",
    "pixel_to_carrington",
    "pixel_to_helioprojective",
    "render",
]

#: Side of an AIA or HMI full-disk image, in pixels.
IMAGE_SIZE = 4096
#: Solar radius used by AIA and HMI (and by im_patch when RSUN_REF is missing), in metres.
RSUN_REF = 6.96e8

_ARCSEC = math.pi / (180.0 * 3600.0)
_DEG = math.pi / 180.0
# Geometry is computed exactly by sunpy on a grid of whole hours and interpolated in between:
# L0, B0 and the distance are smooth enough that the error is far below 1e-6 degree.
_NODE_SECONDS = 3600.0


@dataclass(frozen=True)
class Geometry:
    """
    Where the Sun is seen from (the centre of) the Earth at one time.

    Attributes
    ----------
    b0 : float
        Heliographic latitude of the disk centre (``CRLT_OBS``, ``HGLT_OBS``), degrees.
    l0 : float
        Carrington longitude of the disk centre (``CRLN_OBS``), degrees in [0, 360).
    dsun : float
        Distance to the Sun centre (``DSUN_OBS``), metres.
    rsun_obs : float
        Angular radius of a sphere of radius `RSUN_REF` (``RSUN_OBS``), arcsec.
    car_rot : int
        Carrington rotation number (``CAR_ROT``).
    rotation : float
        Fractional Carrington rotation number.
    """

    b0: float
    l0: float
    dsun: float
    rsun_obs: float
    car_rot: int
    rotation: float


@functools.lru_cache(maxsize=4096)
def _node_geometry(node: int) -> tuple[float, float, float, float]:
    # Exact values from sunpy at one grid node (whole hours since MJD 0, UTC).
    from sunpy.coordinates import sun

    t = Time(node * _NODE_SECONDS / 86400.0, format="mjd", scale="utc")
    return (
        float(sun.B0(t).deg),
        float(sun.L0(t).deg),
        float(sun.earth_distance(t).to_value("m")),
        float(sun.carrington_rotation_number(t)),
    )


@functools.lru_cache(maxsize=65536)
def _geometry_at(mjd_utc: float) -> Geometry:
    seconds = mjd_utc * 86400.0
    node = math.floor(seconds / _NODE_SECONDS)
    frac = seconds / _NODE_SECONDS - node
    b0a, l0a, da, rota = _node_geometry(node)
    b0b, l0b, db, rotb = _node_geometry(node + 1)
    # L0 decreases with time and wraps from 0 to 360 at the start of a rotation.
    dl = (l0b - l0a + 180.0) % 360.0 - 180.0
    l0 = (l0a + frac * dl) % 360.0
    b0 = b0a + frac * (b0b - b0a)
    dsun = da + frac * (db - da)
    rotation = rota + frac * (rotb - rota)
    rsun_obs = math.asin(RSUN_REF / dsun) / _ARCSEC
    return Geometry(
        b0=b0, l0=l0, dsun=dsun, rsun_obs=rsun_obs, car_rot=math.floor(rotation), rotation=rotation
    )


def observer_geometry(t_obs: Time | str) -> Geometry:
    """
    The geometry of the Sun seen from the Earth at ``t_obs``.

    SDO is in a geosynchronous orbit, so the Earth's centre stands in for it (a few arcsec of
    parallax that the offline JSOC does not need). Values come from `sunpy.coordinates.sun`
    (``B0``, ``L0``, ``earth_distance``, ``carrington_rotation_number``), cached per time.

    Parameters
    ----------
    t_obs : `~astropy.time.Time` or str
        Observation time (any scale).

    Returns
    -------
    Geometry
    """
    t = Time(t_obs)
    # Round to the microsecond so that equal times hit the cache.
    return _geometry_at(round(float(t.utc.mjd), 11))


def format_tai(t: Time) -> str:
    """Format a time as DRMS prints TAI times, e.g. ``2014.02.05_08:00:35_TAI``."""
    s = Time(t).tai.strftime("%Y.%m.%d_%H:%M:%S")
    return f"{s}_TAI"


def _format_utc_z(t: Time, digits: int = 0) -> str:
    t = Time(t).utc
    t.precision = digits
    return t.isot + "Z"


# Per-channel instrument constants: plate scale (arcsec/px), roll (deg), exposure (s), and the
# brightness model: disk centre, limb coefficient (negative = limb brightening), corona at the
# limb, active-region peak, grid contrast (fraction of the disk value).
_AIA_CHANNELS: dict[int, dict[str, float]] = {
    94: {
        "cdelt": 0.600109,
        "crota": 0.0571,
        "exptime": 2.901,
        "disk": 2.0,
        "limb": -0.3,
        "corona": 1.2,
        "ar": 60.0,
        "grid": 0.15,
    },
    131: {
        "cdelt": 0.600698,
        "crota": 0.0648,
        "exptime": 2.901,
        "disk": 6.0,
        "limb": -0.3,
        "corona": 3.0,
        "ar": 150.0,
        "grid": 0.15,
    },
    171: {
        "cdelt": 0.599489,
        "crota": 0.0136,
        "exptime": 1.999,
        "disk": 300.0,
        "limb": -0.5,
        "corona": 220.0,
        "ar": 2500.0,
        "grid": 0.12,
    },
    193: {
        "cdelt": 0.600758,
        "crota": -0.0301,
        "exptime": 1.999,
        "disk": 500.0,
        "limb": -0.4,
        "corona": 300.0,
        "ar": 3500.0,
        "grid": 0.12,
    },
    211: {
        "cdelt": 0.600758,
        "crota": -0.0208,
        "exptime": 2.901,
        "disk": 200.0,
        "limb": -0.4,
        "corona": 120.0,
        "ar": 1800.0,
        "grid": 0.12,
    },
    304: {
        "cdelt": 0.600165,
        "crota": 0.0875,
        "exptime": 2.901,
        "disk": 80.0,
        "limb": -0.2,
        "corona": 25.0,
        "ar": 400.0,
        "grid": 0.15,
    },
    335: {
        "cdelt": 0.600737,
        "crota": 0.0480,
        "exptime": 2.901,
        "disk": 10.0,
        "limb": -0.3,
        "corona": 6.0,
        "ar": 120.0,
        "grid": 0.15,
    },
    1600: {
        "cdelt": 0.600971,
        "crota": -0.0173,
        "exptime": 2.901,
        "disk": 250.0,
        "limb": 0.4,
        "corona": 0.0,
        "ar": 900.0,
        "grid": 0.08,
    },
    1700: {
        "cdelt": 0.600737,
        "crota": -0.0173,
        "exptime": 1.000,
        "disk": 2500.0,
        "limb": 0.5,
        "corona": 0.0,
        "ar": 3000.0,
        "grid": 0.05,
    },
    4500: {
        "cdelt": 0.600737,
        "crota": -0.0173,
        "exptime": 0.500,
        "disk": 9000.0,
        "limb": 0.6,
        "corona": 0.0,
        "ar": -3000.0,
        "grid": 0.03,
    },
}
_AIA_DEFAULT = _AIA_CHANNELS[171]
_AIA_CAMERAS = {94: 4, 131: 1, 171: 3, 193: 2, 211: 2, 304: 4, 335: 1, 1600: 3, 1700: 3, 4500: 3}
_HMI = {"cdelt": 0.504310, "crota": 180.0817, "exptime": 0.1350}

# Active regions fixed in Carrington coordinates: (longitude, latitude, size in degrees, weight).
# The first is on the disk close to disk centre on 2014-02-05 08:00 UTC (L0 = 84.2 deg there).
ACTIVE_REGIONS: tuple[tuple[float, float, float, float], ...] = (
    (80.0, -12.0, 1.6, 1.0),
    (150.0, 15.0, 2.5, 0.6),
    (20.0, 8.0, 2.0, 0.8),
    (260.0, -20.0, 2.5, 0.7),
)


@dataclass(frozen=True)
class NoaaRegion:
    """
    A NOAA active region of the offline JSOC: one disk passage of a feature of `ACTIVE_REGIONS`.

    Attributes
    ----------
    number : int
        The NOAA (SWPC) region number, e.g. 11967.
    feature : int
        Index into `ACTIVE_REGIONS` (the Carrington position of the feature).
    first_day, last_day : str
        First and last ``YYYY-MM-DD`` with a daily su_rsb.NOAA_ActiveRegions record (00:00 UTC).
    harpnum : int
        The HARP number of the same region (hmi.sharp_cea_720s).
    zurich, magnetic : str
        Zurich class and magnetic type written in the daily records.
    area, spots : int
        Area (millionths of the hemisphere) and spot count.
    """

    number: int
    feature: int
    first_day: str
    last_day: str
    harpnum: int
    zurich: str = "Dkc"
    magnetic: str = "Beta-Gamma"
    area: int = 300
    spots: int = 12


#: The NOAA regions of the offline JSOC, one entry per disk passage of a procedural feature. Their
#: positions follow the features' fixed Carrington coordinates; 11967 sits near disk centre on
#: 2014-02-05 (LongitudeCM -9 at 00:00 UTC, +5 on 2014-02-06).
NOAA_REGIONS: tuple[NoaaRegion, ...] = (
    NoaaRegion(11946, 3, "2014-01-17", "2014-01-29", 3497, "Cao", "Beta", 120, 6),
    NoaaRegion(11959, 1, "2014-01-26", "2014-02-06", 3535, "Eai", "Beta-Gamma", 250, 18),
    NoaaRegion(11967, 0, "2014-01-31", "2014-02-12", 3563, "Fkc", "Beta-Gamma-Delta", 1270, 45),
    NoaaRegion(11976, 2, "2014-02-05", "2014-02-16", 3586, "Dao", "Beta", 180, 9),
    NoaaRegion(11982, 3, "2014-02-14", "2014-02-25", 3604, "Hsx", "Alpha", 60, 1),
)

_GRID_STEP = 15.0  # degrees between Carrington grid lines
_GRID_WIDTH = 0.25  # degrees, half width of a grid line


def _jitter(recnum: int, salt: int) -> float:
    # A deterministic number in [-1, 1) per record: pointing wobbles slightly between images.
    h = (recnum * 2654435761 + salt * 40503 + 12345) % 1000003
    return 2.0 * h / 1000003.0 - 1.0


def _t_rec_string(record: Record) -> str:
    if getattr(record.series, "time_format", "") == "tai" or record.series.instrument == "HMI":
        return format_tai(record.t_rec)
    return _format_utc_z(record.t_rec)


def full_disk_header(record: Record) -> dict[str, Any]:
    """
    The level-1 FITS header of a record's full-disk image.

    Parameters
    ----------
    record : `~sunpy_jsoc_cutout.testing.catalog.Record`
        An AIA or HMI record.

    Returns
    -------
    dict
        Upper-case FITS keywords (T_REC, T_OBS, DATE-OBS, TELESCOP, INSTRUME, WAVELNTH, WAVEUNIT,
        EXPTIME, QUALITY, CAMERA, NAXIS1/2, CTYPE1/2, CUNIT1/2, CDELT1/2, CRPIX1/2, CRVAL1/2,
        CROTA2, DSUN_OBS, RSUN_OBS, RSUN_REF, R_SUN, CRLN_OBS, CRLT_OBS, CAR_ROT, HGLN_OBS,
        HGLT_OBS, BUNIT, ...). ``sunpy.map.Map((data, header))`` gives the right WCS and observer.
    """
    if getattr(record.series, "kind", "slotted") == "harp":
        return _cea_header(record)
    instrument = record.series.instrument.upper()
    t_obs = Time(record.t_obs)
    geo = observer_geometry(t_obs)
    recnum = int(record.recnum)
    if instrument == "HMI":
        consts = _HMI
        exptime = consts["exptime"]
    else:
        consts = _AIA_CHANNELS.get(int(record.wavelength or 171), _AIA_DEFAULT)
        exptime = consts["exptime"]
    cdelt = consts["cdelt"]
    crpix1 = 2048.5 + 1.2 * _jitter(recnum, 1) + (0.9 if instrument == "HMI" else 0.0)
    crpix2 = 2048.5 + 1.2 * _jitter(recnum, 2) - (0.4 if instrument == "HMI" else 0.0)
    crota2 = consts["crota"] + 0.002 * _jitter(recnum, 3)
    header: dict[str, Any] = {
        "SIMPLE": True,
        "BITPIX": -32,
        "NAXIS": 2,
        "NAXIS1": IMAGE_SIZE,
        "NAXIS2": IMAGE_SIZE,
        "T_REC": _t_rec_string(record),
        "T_OBS": (format_tai(t_obs) if instrument == "HMI" else _format_utc_z(t_obs, 2)),
        "DATE-OBS": (t_obs.utc - TimeDelta(exptime / 2, format="sec")).isot
        if instrument == "AIA"
        else t_obs.utc.isot,
        "TELESCOP": f"SDO/{instrument}",
        "ORIGIN": "SDO/JSOC-SDP",
        "QUALITY": 0,
        "EXPTIME": exptime,
        "CTYPE1": "HPLN-TAN",
        "CTYPE2": "HPLT-TAN",
        "CUNIT1": "arcsec",
        "CUNIT2": "arcsec",
        "CDELT1": cdelt,
        "CDELT2": cdelt,
        "CRPIX1": round(crpix1, 4),
        "CRPIX2": round(crpix2, 4),
        "CRVAL1": 0.0,
        "CRVAL2": 0.0,
        "CROTA2": round(crota2, 6),
        "DSUN_OBS": geo.dsun,
        "DSUN_REF": 149597870691.0,
        "RSUN_REF": RSUN_REF,
        "RSUN_OBS": geo.rsun_obs,
        "R_SUN": geo.rsun_obs / cdelt,
        "CRLN_OBS": geo.l0,
        "CRLT_OBS": geo.b0,
        "CAR_ROT": geo.car_rot,
        "HGLN_OBS": 0.0,
        "HGLT_OBS": geo.b0,
        "OBS_VR": 0.0,
        "OBS_VW": 0.0,
        "OBS_VN": 0.0,
    }
    # The catalog is the authority on the keywords jsoc_info shows; use its strings when it has them.
    shown = {
        name: _shown_keyword(record, name)
        for name in ("T_REC", "T_OBS", "DATE-OBS", "INSTRUME", "EXPTIME", "QUALITY")
    }
    if instrument == "HMI":
        continuum = _is_continuum(record)
        header.update(
            {
                "INSTRUME": "HMI_FRONT2",
                "CAMERA": int(record.camera or 2),
                "WAVELNTH": 6173.0,
                "WAVEUNIT": "angstrom",
                "BUNIT": "DN/s" if continuum else "Gauss",
                "CONTENT": "CONTINUUM INTENSITY" if continuum else "MAGNETOGRAM",
            }
        )
    else:
        channel = int(record.wavelength or 171)
        header.update(
            {
                "INSTRUME": f"AIA_{_AIA_CAMERAS.get(channel, 3)}",
                "WAVELNTH": channel,
                "WAVEUNIT": "angstrom",
                "BUNIT": "DN",
                "PIXLUNIT": "DN",
                "IMG_TYPE": "LIGHT",
                "LVL_NUM": 1.0,
            }
        )
    for name in ("T_REC", "T_OBS", "DATE-OBS", "INSTRUME"):
        if shown[name] is not None:
            header[name] = shown[name]
    if shown["EXPTIME"] is not None:
        header["EXPTIME"] = float(shown["EXPTIME"])
    if shown["QUALITY"] is not None:
        q = int(shown["QUALITY"], 0)
        header["QUALITY"] = q - (1 << 32) if q >= (1 << 31) else q
    return header


def _is_continuum(record: Record) -> bool:
    return "continuum" in tuple(getattr(record.series, "segments", ())[:1])


def _cea_header(record: Record) -> dict[str, Any]:
    # A SHARP CEA patch: Carrington longitude / sine-latitude grid around the region (CRLN-CEA).
    t_obs = Time(record.t_obs)
    geo = observer_geometry(t_obs)
    cdelt = 0.03
    nx, ny = 600, 400
    lon = float(record.keyword("CRVAL1"))
    lat = float(record.keyword("CRVAL2"))
    return {
        "SIMPLE": True,
        "BITPIX": -32,
        "NAXIS": 2,
        "NAXIS1": nx,
        "NAXIS2": ny,
        "T_REC": format_tai(record.t_rec),
        "T_OBS": format_tai(t_obs),
        "DATE-OBS": t_obs.utc.isot,
        "TELESCOP": "SDO/HMI",
        "INSTRUME": "HMI_COMBINED",
        "HARPNUM": int(record.keyword("HARPNUM")),
        "NOAA_AR": int(record.keyword("NOAA_AR")),
        "QUALITY": 0,
        "CTYPE1": "CRLN-CEA",
        "CTYPE2": "CRLT-CEA",
        "CUNIT1": "degree",
        "CUNIT2": "degree",
        "CDELT1": cdelt,
        "CDELT2": cdelt,
        "CRPIX1": (nx + 1) / 2.0,
        "CRPIX2": (ny + 1) / 2.0,
        "CRVAL1": lon,
        "CRVAL2": lat,
        "CROTA2": 0.0,
        "DSUN_OBS": geo.dsun,
        "RSUN_REF": RSUN_REF,
        "RSUN_OBS": geo.rsun_obs,
        "CRLN_OBS": geo.l0,
        "CRLT_OBS": geo.b0,
        "CAR_ROT": geo.car_rot,
        "HGLN_OBS": 0.0,
        "HGLT_OBS": geo.b0,
        "BUNIT": "Mx/cm^2",
    }


def _render_cea(header: dict, rows: Any, cols: Any) -> np.ndarray:
    # Carrington longitude and latitude of CEA pixels (lambda = 1: y is sin(latitude) in degrees).
    r = _as_index(rows)[:, None]
    c = _as_index(cols)[None, :]
    lon = np.radians(header["CRVAL1"] + (c + 1 - header["CRPIX1"]) * header["CDELT1"])
    sin_lat0 = math.sin(math.radians(header["CRVAL2"]))
    sin_lat = np.clip(sin_lat0 + np.radians((r + 1 - header["CRPIX2"]) * header["CDELT2"]), -1, 1)
    cos_lat = np.sqrt(1 - sin_lat**2)
    vx, vy, vz = cos_lat * np.cos(lon), cos_lat * np.sin(lon), sin_lat
    vec, size, weight = _region_vectors()
    field = np.zeros(np.broadcast(r, c).shape)
    for (ax, ay, az), sz, w in zip(vec, size, weight, strict=True):
        cosd = vx * ax + vy * ay + vz * az
        field += 1800.0 * w * np.exp(-2.0 * (1.0 - cosd) / (sz * sz))
    return field.astype(np.float32)


def _shown_keyword(record: Record, name: str) -> str | None:
    try:
        value = record.keyword(name)
    except (AttributeError, KeyError, NotImplementedError, ValueError, TypeError):
        return None
    if value is None or value in ("", "Invalid KeyLink"):
        return None
    if name in ("EXPTIME", "QUALITY"):
        try:
            float(value) if name == "EXPTIME" else int(value, 0)
        except ValueError:
            return None
    return str(value)


# --------------------------------------------------------------------------------------------
# Geometry: pixels <-> helioprojective <-> heliographic (Stonyhurst, Carrington).


def pixel_to_helioprojective(header: dict, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray]:
    """
    Helioprojective longitude and latitude (radians) of array pixels.

    Parameters
    ----------
    header : dict
        Needs CRPIX1/2, CDELT1/2 (arcsec), CRVAL1/2 (arcsec) and CROTA2 (degrees).
    rows, cols : array_like
        0-based array indices (``data[row, col]``); they broadcast against each other.

    Returns
    -------
    tx, ty : `numpy.ndarray`
        Gnomonic (TAN) projection inverted exactly, as FITS WCS does for HPLN-TAN/HPLT-TAN.
    """
    rho = float(header.get("CROTA2", 0.0)) * _DEG
    c, s = math.cos(rho), math.sin(rho)
    dx = np.asarray(cols, dtype=float) + 1.0 - float(header["CRPIX1"])
    dy = np.asarray(rows, dtype=float) + 1.0 - float(header["CRPIX2"])
    # Intermediate world coordinates in radians (tangent-plane coordinates).
    xi = (float(header["CDELT1"]) * (c * dx - s * dy) + float(header.get("CRVAL1", 0.0))) * _ARCSEC
    eta = (float(header["CDELT2"]) * (s * dx + c * dy) + float(header.get("CRVAL2", 0.0))) * _ARCSEC
    tx = np.arctan(xi)
    ty = np.arctan(eta / np.sqrt(1.0 + xi * xi))
    return tx, ty


def _observer(header: dict) -> tuple[float, float, float, float]:
    dsun = float(header["DSUN_OBS"])
    rsun = float(header.get("RSUN_REF", RSUN_REF))
    b0 = float(header.get("CRLT_OBS", header.get("HGLT_OBS", 0.0))) * _DEG
    l0 = float(header.get("CRLN_OBS", 0.0))
    return dsun, rsun, b0, l0


def _ray_sphere(tx: np.ndarray, ty: np.ndarray, dsun: float, rsun: float) -> dict[str, np.ndarray]:
    # Heliocentric-Cartesian frame of the observer: z towards the observer, y to solar north
    # (projected), x to the west. The ray leaves the observer at (0, 0, dsun).
    cty = np.cos(ty)
    dxr = cty * np.sin(tx)
    dyr = np.sin(ty)
    cosang = cty * np.cos(tx)  # cosine of the angle between the ray and the Sun centre
    disc = rsun * rsun - dsun * dsun * (1.0 - cosang * cosang)
    on_disk = (disc >= 0.0) & (cosang > 0.0)
    s = dsun * cosang - np.sqrt(np.where(on_disk, disc, 0.0))
    x = s * dxr
    y = s * dyr
    z = dsun - s * cosang
    return {"on_disk": on_disk, "s": s, "x": x, "y": y, "z": z, "cosang": cosang}


def pixel_to_carrington(header: dict, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Carrington longitude and latitude (degrees) of array pixels, by ray-sphere intersection.

    Parameters
    ----------
    header : dict
        A full-disk (or cut-out) header with the WCS and observer keywords.
    rows, cols : array_like
        0-based array indices.

    Returns
    -------
    lon, lat : `numpy.ndarray`
        Carrington coordinates in degrees (longitude in [0, 360)); NaN off the disk.
    on_disk : `numpy.ndarray` of bool
    """
    tx, ty = pixel_to_helioprojective(header, rows, cols)
    dsun, rsun, b0, l0 = _observer(header)
    hit = _ray_sphere(tx, ty, dsun, rsun)
    cb, sb = math.cos(b0), math.sin(b0)
    lat = np.arcsin(np.clip((hit["y"] * cb + hit["z"] * sb) / rsun, -1.0, 1.0))
    lon = np.arctan2(hit["x"], hit["z"] * cb - hit["y"] * sb)
    lon = (np.degrees(lon) + l0) % 360.0
    lat = np.degrees(lat)
    off = ~hit["on_disk"]
    lon = np.where(off, np.nan, lon)
    lat = np.where(off, np.nan, lat)
    return lon, lat, hit["on_disk"]


def carrington_to_pixel(header: dict, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    0-based array position (col, row) of Carrington coordinates, inverse of `pixel_to_carrington`.

    Parameters
    ----------
    header : dict
        Header with the WCS and observer keywords.
    lon, lat : array_like
        Carrington longitude and latitude in degrees.

    Returns
    -------
    col, row : `numpy.ndarray`
        Fractional 0-based pixel coordinates (``x``, ``y``).
    visible : `numpy.ndarray` of bool
        False for points on the far side.
    """
    dsun, rsun, b0, l0 = _observer(header)
    lon = (np.asarray(lon, dtype=float) - l0) * _DEG
    lat = np.asarray(lat, dtype=float) * _DEG
    cb, sb = math.cos(b0), math.sin(b0)
    x = rsun * np.cos(lat) * np.sin(lon)
    y = rsun * (np.sin(lat) * cb - np.cos(lat) * np.cos(lon) * sb)
    z = rsun * (np.sin(lat) * sb + np.cos(lat) * np.cos(lon) * cb)
    dist = np.sqrt(x * x + y * y + (dsun - z) ** 2)
    tx = np.arctan2(x, dsun - z)
    ty = np.arcsin(y / dist)
    # Helioprojective -> tangent plane -> pixels (inverse of pixel_to_helioprojective).
    xi = np.tan(tx)
    eta = np.tan(ty) * np.sqrt(1.0 + xi * xi)
    wx = xi / _ARCSEC - float(header.get("CRVAL1", 0.0))
    wy = eta / _ARCSEC - float(header.get("CRVAL2", 0.0))
    rho = float(header.get("CROTA2", 0.0)) * _DEG
    c, s = math.cos(rho), math.sin(rho)
    col = (c * wx + s * wy) / float(header["CDELT1"]) + float(header["CRPIX1"]) - 1.0
    row = (c * wy - s * wx) / float(header["CDELT2"]) + float(header["CRPIX2"]) - 1.0
    visible = z * dsun > rsun * rsun  # in front of the limb as seen from the observer
    return col, row, visible


# --------------------------------------------------------------------------------------------
# Pixel values.


def _as_index(index: Any) -> np.ndarray:
    if isinstance(index, slice):
        start, stop, step = (
            index.indices(IMAGE_SIZE)
            if index.stop is None
            else (index.start or 0, index.stop, index.step or 1)
        )
        return np.arange(start, stop, step, dtype=float)
    return np.asarray(index, dtype=float)


@functools.lru_cache(maxsize=1)
def _region_vectors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lon = np.radians([r[0] for r in ACTIVE_REGIONS])
    lat = np.radians([r[1] for r in ACTIVE_REGIONS])
    vec = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    size = np.radians([r[2] for r in ACTIVE_REGIONS])
    weight = np.array([r[3] for r in ACTIVE_REGIONS])
    return vec, size, weight


def render(record: Record, header: dict, rows: Any, cols: Any) -> np.ndarray:
    """
    Pixel values of the procedural Sun for a sub-array of a record's full-disk image.

    Parameters
    ----------
    record : `~sunpy_jsoc_cutout.testing.catalog.Record`
        The record (its instrument and channel choose the brightness model).
    header : dict
        Its full-disk header (`full_disk_header`), which fixes the geometry.
    rows, cols : slice or 1-D array of int
        0-based rows and columns of the full-disk array to compute.

    Returns
    -------
    `numpy.ndarray`
        float32 array of shape ``(len(rows), len(cols))``. AIA: DN with a limb-darkened (or
        brightened) disk, a corona off the limb and bright active regions. HMI: a line-of-sight
        magnetogram in Gauss (bipolar regions, NaN off the disk as in real HMI data). Both show a
        faint grid every 15 degrees of Carrington longitude and latitude.
    """
    if str(header.get("CTYPE1", "")).endswith("-CEA"):
        return _render_cea(header, rows, cols)
    r = _as_index(rows)[:, None]
    c = _as_index(cols)[None, :]
    tx, ty = pixel_to_helioprojective(header, r, c)
    dsun, rsun, b0, l0 = _observer(header)
    hit = _ray_sphere(tx, ty, dsun, rsun)
    on = hit["on_disk"]

    # Unit vector of the surface point in the Carrington frame.
    cb, sb = math.cos(b0), math.sin(b0)
    x, y, z = hit["x"] / rsun, hit["y"] / rsun, hit["z"] / rsun
    zc = z * cb - y * sb
    sin_lat = np.clip(y * cb + z * sb, -1.0, 1.0)
    lr = math.radians(l0)
    cl, sl = math.cos(lr), math.sin(lr)
    vx = zc * cl - x * sl
    vy = zc * sl + x * cl
    vz = sin_lat

    # mu = cosine of the angle between the surface normal and the line of sight.
    s = np.where(on, hit["s"], 1.0)
    mu = np.clip((dsun * hit["z"] - rsun * rsun) / (rsun * s), 0.0, 1.0)

    # Carrington grid: distance in degrees to the nearest meridian / parallel.
    lat_deg = np.degrees(np.arcsin(sin_lat))
    lon_deg = np.degrees(np.arctan2(vy, vx)) % 360.0
    dlon = np.abs((lon_deg + _GRID_STEP / 2) % _GRID_STEP - _GRID_STEP / 2) * np.cos(np.radians(lat_deg))
    dlat = np.abs((lat_deg + _GRID_STEP / 2) % _GRID_STEP - _GRID_STEP / 2)
    grid = np.exp(-((np.minimum(dlon, dlat) / _GRID_WIDTH) ** 2))

    vec, size, weight = _region_vectors()
    is_hmi = record.series.instrument.upper() == "HMI"
    if is_hmi and _is_continuum(record):
        # Continuum intensity: limb darkening (u = 0.6) and dark spots at the active regions.
        spots = np.zeros_like(mu)
        for (ax, ay, az), sz, w in zip(vec, size, weight, strict=True):
            cosd = vx * ax + vy * ay + vz * az
            spots += 0.7 * w * np.exp(-2.0 * (1.0 - cosd) / (0.25 * sz * sz))
        data = 60000.0 * (1.0 - 0.6 * (1.0 - mu)) * (1.0 - np.minimum(spots, 0.8)) * (1.0 + 0.01 * grid)
        data = np.where(on, data, np.nan)
    elif is_hmi:
        field = np.zeros_like(mu)
        for (ax, ay, az), sz, w in zip(vec, size, weight, strict=True):
            # A bipolar region: leading positive and following negative polarity.
            lon_a = math.atan2(ay, ax)
            for sign, shift in ((1.0, 1.2), (-1.0, -1.2)):
                lo = lon_a + shift * sz
                px, py = math.cos(lo) * math.hypot(ax, ay), math.sin(lo) * math.hypot(ax, ay)
                cosd = vx * px + vy * py + vz * az
                field += sign * 1800.0 * w * np.exp(-2.0 * (1.0 - cosd) / (sz * sz))
        data = (field + 30.0 * grid) * mu
        data = np.where(on, data, np.nan)
    else:
        p = _AIA_CHANNELS.get(int(record.wavelength or 171), _AIA_DEFAULT)
        disk = p["disk"] * (1.0 - p["limb"] * (1.0 - mu)) * (1.0 + p["grid"] * grid)
        for (ax, ay, az), sz, w in zip(vec, size, weight, strict=True):
            cosd = vx * ax + vy * ay + vz * az
            disk += p["ar"] * w * np.exp(-2.0 * (1.0 - cosd) / (sz * sz))
        # Off the limb: a corona falling with the impact parameter of the ray.
        sinang = np.sqrt(np.clip(1.0 - hit["cosang"] ** 2, 0.0, 1.0))
        b = np.maximum(dsun * sinang / rsun, 1.0)
        corona = p["corona"] * b**-6.0
        data = np.where(on, disk, corona)
    return data.astype(np.float32)
