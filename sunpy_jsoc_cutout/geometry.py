"""
Coordinate work for cutouts, all through `sunpy.coordinates`.

JSOC's ``im_patch`` takes positions as seen from SDO at the reference time ``t_ref``
(``locunits=arcsec`` or ``pixels``), as Stonyhurst longitude from the central meridian and
latitude at ``t_ref`` (``stony``), or as Carrington longitude and latitude with the Carrington
rotation in which that longitude crosses the central meridian (``carrlong``). These functions
bring what the user gave into those forms and answer the geometric questions the checks ask
(is the centre on the disk, on the near side, how many pixels is a box). Nothing here does I/O.
"""

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, UnitSphericalRepresentation
from astropy.time import Time
from sunpy.coordinates import (
    HeliographicCarrington,
    HeliographicStonyhurst,
    Helioprojective,
    get_earth,
    sun,
)

__all__ = [
    "AIA_SCALED_PLATE_SCALE",
    "DETECTOR_PIXELS",
    "PLATE_SCALE",
    "box_in_pixels",
    "carrington_lonlat",
    "carrington_rotation_at_meridian",
    "corners_to_box",
    "degrees_box_in_arcsec",
    "is_on_disk",
    "is_on_near_side",
    "location_kind",
    "sdo_helioprojective",
    "stonyhurst_lonlat",
]

# Nominal plate scales of the level-1 images (the exact CDELT varies by a fraction of a per cent).
PLATE_SCALE = {"AIA": 0.6 * u.arcsec / u.pix, "HMI": 0.504 * u.arcsec / u.pix}
# aia_scale brings every AIA image to exactly this scale (level 1.5).
AIA_SCALED_PLATE_SCALE = 0.6 * u.arcsec / u.pix
DETECTOR_PIXELS = 4096


def location_kind(coord):
    """
    The ``locunits`` im_patch needs for a centre or corner.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord` or `~astropy.units.Quantity`
        A coordinate, or a pixel pair ``(x, y) * u.pix``.

    Returns
    -------
    str
        ``"arcsec"`` (helioprojective), ``"stony"`` (Stonyhurst), ``"carrlong"``
        (Carrington) or ``"pixels"``.

    Raises
    ------
    ValueError
        For a coordinate frame im_patch has no units for.
    """
    if not isinstance(coord, SkyCoord):
        return "pixels"
    frame = coord.frame
    if isinstance(frame, Helioprojective):
        return "arcsec"
    if isinstance(frame, HeliographicCarrington):
        return "carrlong"
    if isinstance(frame, HeliographicStonyhurst):
        return "stony"
    raise ValueError(
        f"a.jsoc_cutout.Cutout: a {frame.name} coordinate cannot be sent to im_patch; give the "
        "centre in Helioprojective (seen from any observer), HeliographicStonyhurst or "
        "HeliographicCarrington coordinates, or as a pixel pair such as (2048, 2048) * u.pix."
    )


def sdo_helioprojective(coord, t_ref):
    """
    The helioprojective position of ``coord`` as SDO sees it at ``t_ref``.

    SDO is in geosynchronous orbit, so its view is Earth's to far better than a pixel for
    the purpose of placing a box.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        A position in any frame sunpy knows. A helioprojective coordinate with no observer
        is taken to be seen from SDO already.
    t_ref : `~astropy.time.Time`
        The reference time.

    Returns
    -------
    `~astropy.coordinates.SkyCoord`
        The position in ``Helioprojective(observer="earth", obstime=t_ref)``.

    Raises
    ------
    ValueError
        If the position cannot be placed on the Sun (a helioprojective position off the disk
        of an observer other than SDO).
    """
    target = Helioprojective(observer="earth", obstime=t_ref)
    if isinstance(coord.frame, Helioprojective) and coord.frame.observer is None:
        return SkyCoord(coord.Tx, coord.Ty, frame=target)
    coord = _with_defaults(coord, t_ref)
    if coord.frame.is_equivalent_frame(target):
        return coord
    if not isinstance(coord.frame, Helioprojective):
        coord = _on_surface(coord)
    seen = coord.transform_to(target)
    if not np.all(np.isfinite([seen.Tx.value, seen.Ty.value])):
        raise ValueError(
            f"a.jsoc_cutout.Cutout: {coord} is off the solar disk as its observer sees it, so it "
            "has no position on the Sun that SDO could see; give the centre as seen from SDO "
            "(Helioprojective with observer='earth') or in heliographic coordinates."
        )
    return seen


def _with_defaults(coord, t_ref):
    """The coordinate with ``obstime`` (and a Carrington observer) filled in when missing."""
    if getattr(coord.frame, "obstime", None) is None:
        coord = SkyCoord(coord.frame.replicate(obstime=Time(t_ref)))
    if isinstance(coord.frame, HeliographicCarrington) and coord.frame.observer is None:
        # SDO's Carrington longitudes are Earth's to far better than a pixel.
        coord = SkyCoord(coord.frame.replicate(observer="earth"))
    return coord


def _on_surface(coord):
    """A heliographic coordinate without a distance, placed on the photosphere."""
    if coord.spherical.distance.unit is u.one:
        frame = coord.frame
        return SkyCoord(frame.realize_frame(coord.spherical * frame.rsun))
    return coord


def stonyhurst_lonlat(coord, t_ref):
    """
    Stonyhurst longitude from the central meridian and latitude, in degrees (``stony``).

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        A heliographic coordinate; its ``obstime`` is the time at which the longitude applies,
        ``t_ref`` when it has none.
    t_ref : `~astropy.time.Time`

    Returns
    -------
    tuple of float
        ``(longitude, latitude)``, longitude in [-180, 180).
    """
    coord = _with_defaults(coord, t_ref)
    hgs = coord.transform_to(HeliographicStonyhurst(obstime=coord.obstime))
    return float(hgs.lon.wrap_at(180 * u.deg).to_value(u.deg)), float(hgs.lat.to_value(u.deg))


def carrington_lonlat(coord, t_ref):
    """
    Carrington longitude and latitude in degrees (``carrlong``), as SDO counts them.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        A heliographic coordinate.
    t_ref : `~astropy.time.Time`
        The time for coordinates without an ``obstime``.

    Returns
    -------
    tuple of float
        ``(longitude, latitude)``, longitude in [0, 360).
    """
    coord = _with_defaults(coord, t_ref)
    hgc = coord.transform_to(HeliographicCarrington(obstime=coord.obstime, observer="earth"))
    return float(hgc.lon.wrap_at(360 * u.deg).to_value(u.deg)), float(hgc.lat.to_value(u.deg))


def carrington_rotation_at_meridian(longitude, t_ref):
    """
    The Carrington rotation in which ``longitude`` crosses the central meridian nearest ``t_ref``.

    im_patch (``locunits=carrlong``) takes this number as ``car_rot`` and computes the time
    of the crossing from it and the longitude.

    Parameters
    ----------
    longitude : float
        Carrington longitude in degrees.
    t_ref : `~astropy.time.Time`

    Returns
    -------
    int
    """
    # Within rotation N, longitude L is on the central meridian at the fractional rotation
    # number N + 1 - L/360 (a rotation starts with longitude 360 on the meridian).
    now = float(sun.carrington_rotation_number(Time(t_ref)))
    offset = 1 - (float(longitude) % 360) / 360
    return int(np.round(now - offset))


def is_on_disk(coord):
    """
    Whether a helioprojective position lies on the solar disk as its observer sees it.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        A position in a helioprojective frame with an observer and an obstime.

    Returns
    -------
    bool
    """
    radius = np.arcsin((sun.constants.radius / coord.observer.radius).decompose())
    return bool(np.hypot(coord.Tx, coord.Ty) < radius)


def is_on_near_side(coord, t):
    """
    Whether a point fixed on the solar surface faces SDO at time ``t``.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        A heliographic coordinate. A Carrington coordinate keeps its longitude (it turns with
        the Sun, as im_patch tracks); a Stonyhurst one is first fixed to the Sun at its own
        ``obstime``.
    t : `~astropy.time.Time`

    Returns
    -------
    bool
    """
    t = Time(t)
    lon, lat = carrington_lonlat(coord, t)
    point = SkyCoord(
        lon * u.deg,
        lat * u.deg,
        sun.constants.radius,
        frame=HeliographicCarrington(obstime=t, observer="earth"),
    ).transform_to(HeliographicStonyhurst(obstime=t))
    p = point.cartesian.xyz.to_value(u.km)
    earth = get_earth(t).cartesian.xyz.to_value(u.km)
    # Visible when the line of sight from the point to the observer leaves the surface outwards.
    return bool(np.dot(p, earth - p) > 0)


def corners_to_box(bottom_left, top_right, t_ref):
    """
    The centre and size of a box given by two opposite corners, in the frame of the first.

    Helioprojective corners give a box in arcseconds as SDO sees it at ``t_ref``;
    heliographic corners (Stonyhurst or Carrington) a box in heliographic degrees in the
    frame of ``bottom_left``; pixel corners a box in pixels.

    Parameters
    ----------
    bottom_left, top_right : `~astropy.coordinates.SkyCoord` or `~astropy.units.Quantity`
        Opposite corners: coordinates in any frame, or both pixel pairs ``(x, y) * u.pix``.
    t_ref : `~astropy.time.Time`
        The reference time, used for coordinates without an ``obstime``.

    Returns
    -------
    center : `~astropy.coordinates.SkyCoord` or `~astropy.units.Quantity`
        The middle of the box, in the frame of the box (a pixel pair for pixel corners).
    width, height : `~astropy.units.Quantity`
        The size of the box, in arcseconds, degrees or pixels.
    """
    kind = location_kind(bottom_left)
    if kind == "pixels":
        (x1, y1), (x2, y2) = bottom_left.to_value(u.pix), top_right.to_value(u.pix)
        center = u.Quantity([(x1 + x2) / 2, (y1 + y2) / 2], u.pix)
        return center, abs(x2 - x1) * u.pix, abs(y2 - y1) * u.pix
    if kind == "arcsec":
        bl = sdo_helioprojective(bottom_left, t_ref)
        tr = sdo_helioprojective(top_right, t_ref)
        center = SkyCoord((bl.Tx + tr.Tx) / 2, (bl.Ty + tr.Ty) / 2, frame=bl.frame)
        return center, np.abs(tr.Tx - bl.Tx).to(u.arcsec), np.abs(tr.Ty - bl.Ty).to(u.arcsec)
    first = _with_defaults(bottom_left, t_ref)
    frame = first.frame.replicate_without_data()
    second = _with_defaults(top_right, first.obstime).transform_to(frame)
    lon1, lat1 = first.lon.to_value(u.deg), first.lat.to_value(u.deg)
    lon2, lat2 = second.lon.to_value(u.deg), second.lat.to_value(u.deg)
    # The shorter way round in longitude, so that a box across 0 or 180 degrees stays small.
    dlon = (lon2 - lon1 + 180) % 360 - 180
    center = SkyCoord(frame.realize_frame(_unit_spherical(lon1 + dlon / 2, (lat1 + lat2) / 2)))
    return center, abs(dlon) * u.deg, abs(lat2 - lat1) * u.deg


def _unit_spherical(lon, lat):
    return UnitSphericalRepresentation(lon * u.deg, lat * u.deg)


def degrees_box_in_arcsec(width, height, latitude, t_ref):
    """
    The size as SDO sees it of a box of heliographic degrees, as im_patch sizes it.

    im_patch projects a box of that size placed on the central meridian at the target's
    latitude, whatever the target's longitude.

    Parameters
    ----------
    width, height : `~astropy.units.Quantity`
        In degrees.
    latitude : `~astropy.units.Quantity`
        The latitude of the box centre.
    t_ref : `~astropy.time.Time`

    Returns
    -------
    tuple of `~astropy.units.Quantity`
        Width and height in arcseconds.
    """
    lons = u.Quantity([-width / 2, width / 2, -width / 2, width / 2])
    lats = u.Quantity([latitude - height / 2] * 2 + [latitude + height / 2] * 2)
    corners = SkyCoord(
        lons, lats, sun.constants.radius, frame=HeliographicStonyhurst(obstime=t_ref)
    ).transform_to(Helioprojective(observer="earth", obstime=t_ref))
    return (
        (corners.Tx.max() - corners.Tx.min()).to(u.arcsec),
        (corners.Ty.max() - corners.Ty.min()).to(u.arcsec),
    )


def box_in_pixels(width, height, instrument, *, plate_scale=None, latitude=0 * u.deg, t_ref=None):
    """
    The size in detector pixels of a box given in pixels, arcseconds or heliographic degrees.

    Parameters
    ----------
    width, height : `~astropy.units.Quantity`
        In pixels, in an angle unit (arcseconds on the sky) or in ``u.deg`` (heliographic
        degrees on the Sun, sized as im_patch does at the central meridian).
    instrument : {"AIA", "HMI"}
    plate_scale : `~astropy.units.Quantity`, optional
        Arcseconds per pixel of the images im_patch cuts; the nominal scale of the instrument
        by default (`AIA_SCALED_PLATE_SCALE` after aia_scale).
    latitude : `~astropy.units.Quantity`, optional
        The latitude of the box centre, for boxes in degrees.
    t_ref : `~astropy.time.Time`, optional
        The reference time, needed for boxes in degrees.

    Returns
    -------
    tuple of float
        Width and height in pixels.
    """
    scale = PLATE_SCALE[instrument] if plate_scale is None else plate_scale
    if width.unit == u.deg and height.unit == u.deg:
        width, height = degrees_box_in_arcsec(width, height, latitude, t_ref)
    return tuple(
        float(size.to_value(u.pix)) if size.unit == u.pix else float((size / scale).to_value(u.pix))
        for size in (width, height)
    )
