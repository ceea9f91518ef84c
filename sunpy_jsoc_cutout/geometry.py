"""
Coordinate work for cutouts, all through `sunpy.coordinates`.

JSOC's ``im_patch`` takes positions as seen from SDO at the reference time ``t_ref``. These
functions bring what the user gave into that view and answer the geometric questions the
checks ask (is the centre on the disk, how many pixels is a box). Nothing here does I/O.
"""

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from sunpy.coordinates import Helioprojective, sun

__all__ = [
    "DETECTOR_PIXELS",
    "PLATE_SCALE",
    "box_in_pixels",
    "corners_to_box",
    "is_on_disk",
    "sdo_helioprojective",
]

# Nominal plate scales of the level-1 images (the exact CDELT varies by a fraction of a per cent).
PLATE_SCALE = {"AIA": 0.6 * u.arcsec / u.pix, "HMI": 0.504 * u.arcsec / u.pix}
DETECTOR_PIXELS = 4096


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
    if getattr(coord.frame, "obstime", None) is None:
        coord = SkyCoord(coord, obstime=t_ref)
    if coord.frame.is_equivalent_frame(target):
        return coord
    seen = coord.transform_to(target)
    if not np.all(np.isfinite([seen.Tx.value, seen.Ty.value])):
        raise ValueError(
            f"Cutout: {coord} is off the solar disk as its observer sees it, so it has no "
            "position on the Sun that SDO could see; give the centre as seen from SDO "
            "(Helioprojective with observer='earth') or in heliographic coordinates."
        )
    return seen


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


def corners_to_box(bottom_left, top_right, t_ref):
    """
    The centre and size of a box given by two opposite corners, in SDO's view at ``t_ref``.

    Parameters
    ----------
    bottom_left, top_right : `~astropy.coordinates.SkyCoord`
        Opposite corners in any frame.
    t_ref : `~astropy.time.Time`

    Returns
    -------
    center : `~astropy.coordinates.SkyCoord`
        The middle of the box, in ``Helioprojective(observer="earth", obstime=t_ref)``.
    width, height : `~astropy.units.Quantity`
        The size of the box in arcseconds.
    """
    bl = sdo_helioprojective(bottom_left, t_ref)
    tr = sdo_helioprojective(top_right, t_ref)
    center = SkyCoord((bl.Tx + tr.Tx) / 2, (bl.Ty + tr.Ty) / 2, frame=bl.frame)
    return center, np.abs(tr.Tx - bl.Tx).to(u.arcsec), np.abs(tr.Ty - bl.Ty).to(u.arcsec)


def box_in_pixels(width, height, instrument):
    """
    The size in detector pixels of a box given in pixels or arcseconds.

    Parameters
    ----------
    width, height : `~astropy.units.Quantity`
        In pixels or in an angle unit.
    instrument : {"AIA", "HMI"}

    Returns
    -------
    tuple of float
        Width and height in pixels, with the nominal plate scale of the instrument.
    """
    scale = PLATE_SCALE[instrument]
    return tuple(
        float(size.to_value(u.pix)) if size.unit == u.pix else float((size / scale).to_value(u.pix))
        for size in (width, height)
    )
