"""
The attrs of ``a.jsoc_cutout`` and the walker that turns a Fido query into plain values.

Importing `sunpy_jsoc_cutout` mounts this module as ``sunpy.net.attrs.jsoc_cutout``. The
attrs only hold and check what the user typed; what they mean for JSOC is decided in
`sunpy_jsoc_cutout.plan`.
"""

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from sunpy.net import attrs as a
from sunpy.net.attr import AttrAnd, AttrOr, AttrWalker, DataAttr, SimpleAttr

__all__ = ["ActiveRegion", "Crop", "Cutout", "Register", "Scale", "Tracking", "Wavelength"]

_LENGTH_UNITS = (u.pix, u.arcsec, u.deg)


def __dir__():
    # Keep tab-completion on a.jsoc_cutout to the attrs themselves.
    return __all__


class ActiveRegion:
    """
    A NOAA active region as the centre of a cutout, looked up on JSOC when searching.

    Give it as the ``center`` of `Cutout`::

        a.jsoc_cutout.Cutout(center=a.jsoc_cutout.ActiveRegion(11967),
                             width=400 * u.arcsec, height=300 * u.arcsec)

    At search time the region is looked up in JSOC's ``su_rsb.NOAA_ActiveRegions`` series
    exactly as the JSOC export form does it: of the daily positions NOAA reported, the one
    nearest the central meridian gives the centre, sent to im_patch as Stonyhurst coordinates
    (``locunits=stony``) with that report's time as ``t_ref``. im_patch then tracks that point
    at the Carrington rate over the whole query. The search results show the position found.

    Parameters
    ----------
    number : int
        The NOAA number. As on the JSOC form, numbers below 7000 are taken as the short form
        NOAA used after 2002 (1967 means 11967).

    Examples
    --------
    >>> import sunpy_jsoc_cutout.attrs as jc
    >>> jc.ActiveRegion(1967)
    ActiveRegion(11967)
    """

    def __init__(self, number):
        if isinstance(number, bool) or not isinstance(number, int | np.integer):
            raise TypeError(
                f"ActiveRegion: the NOAA number must be an integer such as 11967, got {number!r}."
            )
        if number <= 0:
            raise ValueError(f"ActiveRegion: the NOAA number must be positive, such as 11967, got {number}.")
        # The JSOC form's rule: short numbers (< 7000) are the 5-digit numbers after 2002.
        self.number = int(number) + 10000 if number < 7000 else int(number)

    def __eq__(self, other):
        return isinstance(other, ActiveRegion) and other.number == self.number

    def __hash__(self):
        return hash(("ActiveRegion", self.number))

    def __repr__(self):
        return f"ActiveRegion({self.number})"


class Cutout(DataAttr):
    """
    The region JSOC's ``im_patch`` cuts out of every image.

    Give either a centre with a box size, or two opposite corners.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`, `~astropy.units.Quantity` or `ActiveRegion`, optional
        The centre of the box, in any of the units im_patch knows:

        - a ``Helioprojective`` coordinate, seen from any observer: moved to SDO's view at
          ``t_ref`` with `sunpy.coordinates` and sent in arcseconds (``locunits=arcsec``);
        - a ``HeliographicStonyhurst`` coordinate: longitude from the central meridian and
          latitude at ``t_ref`` (``locunits=stony``);
        - a ``HeliographicCarrington`` coordinate: Carrington longitude and latitude with the
          Carrington rotation in which that longitude crosses the central meridian nearest
          ``t_ref`` (``locunits=carrlong``, ``car_rot``); needs tracking;
        - a pixel pair ``(x, y) * u.pix`` on the detector, first pixel (1, 1)
          (``locunits=pixels``);
        - an `ActiveRegion`, looked up on JSOC when searching.

        Its ``obstime``, when set, is the reference time ``t_ref`` at which the centre
        applies; otherwise the start of the query is used.
    width, height : `~astropy.units.Quantity`, optional
        The size of the box: pixels (``u.pix``), arcseconds on the sky (any angle but
        degrees, e.g. ``u.arcsec``, ``u.arcmin``) or heliographic degrees on the Sun
        (``u.deg``; ``boxunits=degrees``).
    bottom_left, top_right : `~astropy.coordinates.SkyCoord` or `~astropy.units.Quantity`, optional
        Two opposite corners of the box, instead of ``center``, ``width`` and ``height``, as
        sunpy's ``a.jsoc.Cutout`` takes them: coordinates in any of the frames above (the
        second is moved into the frame of the first; helioprojective corners give a box in
        arcseconds, heliographic ones a box in degrees), or two pixel pairs.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from sunpy.coordinates import frames
    >>> import sunpy_jsoc_cutout.attrs as jc
    >>> centre = SkyCoord(100 * u.arcsec, 200 * u.arcsec, frame=frames.Helioprojective,
    ...                   observer="earth", obstime="2014-02-05T08:00")
    >>> jc.Cutout(center=centre, width=500 * u.pix, height=500 * u.pix)
    <sunpy_jsoc_cutout.attrs.Cutout(500.0 pix x 500.0 pix around <SkyCoord (Helioprojective: ...)>)>
    >>> jc.Cutout(center=jc.ActiveRegion(11967), width=10 * u.deg, height=8 * u.deg)
    <sunpy_jsoc_cutout.attrs.Cutout(10.0 deg x 8.0 deg around ActiveRegion(11967))>
    """

    def __init__(self, center=None, width=None, height=None, *, bottom_left=None, top_right=None):
        super().__init__()
        corners = bottom_left is not None or top_right is not None
        if corners:
            if center is not None or width is not None or height is not None:
                raise ValueError(
                    "Cutout: give either center= with width= and height=, or bottom_left= with "
                    "top_right=, not both."
                )
            if bottom_left is None or top_right is None:
                raise ValueError("Cutout: bottom_left= and top_right= must be given together.")
            for name, corner in (("bottom_left", bottom_left), ("top_right", top_right)):
                if not (isinstance(corner, SkyCoord) and corner.isscalar) and not _is_pixel_pair(corner):
                    raise TypeError(
                        f"Cutout: {name} must be a scalar SkyCoord or a pixel pair such as "
                        f"(100, 200) * u.pix, got {corner!r}."
                    )
            if _is_pixel_pair(bottom_left) != _is_pixel_pair(top_right):
                raise ValueError(
                    "Cutout: bottom_left and top_right must both be pixel pairs or both be "
                    "coordinates, not one of each."
                )
        else:
            if center is None or width is None or height is None:
                raise ValueError(
                    "Cutout: center=, width= and height= are all needed (or bottom_left= and top_right=)."
                )
            _check_center(center)
            for name, size in (("width", width), ("height", height)):
                if not isinstance(size, u.Quantity) or not size.isscalar:
                    raise TypeError(
                        f"Cutout: {name} must be a scalar Quantity in pixels, arcsec or degrees, "
                        f"got {size!r}."
                    )
                if not any(size.unit.is_equivalent(unit) for unit in _LENGTH_UNITS):
                    raise u.UnitsError(
                        f"Cutout: {name} has unit {size.unit}; use pixels (u.pix), "
                        "arcseconds (u.arcsec) or degrees (u.deg)."
                    )
                if not size.value > 0:
                    raise ValueError(
                        f"Cutout: {name} must be positive, got {size}; give the full size of the box "
                        "in pixels, arcseconds or degrees."
                    )
        self.center = center
        self.width = width
        self.height = height
        self.bottom_left = bottom_left
        self.top_right = top_right

    def collides(self, other):
        return isinstance(other, self.__class__)

    def __repr__(self):
        if self.bottom_left is not None:
            where = "between two corners"
        else:
            where = f"{self.width} x {self.height} around {self.center!r}"
        return f"<{self.__module__}.{self.__class__.__name__}({where})>"


def _is_pixel_pair(value):
    return isinstance(value, u.Quantity) and value.unit == u.pix and value.shape == (2,)


def _check_center(center):
    if isinstance(center, SkyCoord):
        if not center.isscalar:
            raise TypeError("Cutout: center must be a single coordinate, not an array.")
        return
    if _is_pixel_pair(center) or isinstance(center, ActiveRegion):
        return
    raise TypeError(
        "Cutout: center must be a SkyCoord, a pixel pair such as (2048, 2048) * u.pix or an "
        f"ActiveRegion such as ActiveRegion(11967), got {center!r}."
    )


class _Flag(SimpleAttr):
    """A yes/no option of im_patch."""

    def __init__(self, value=True):
        if not isinstance(value, bool):
            raise TypeError(f"{self.__class__.__name__} takes True or False, got {value!r}.")
        super().__init__(value)


class Tracking(_Flag):
    """
    Follow the region across the disk at the Carrington rate (JSOC's default).

    JSOC's flag is inverted (``t=0`` means tracking on); this attr takes the plain meaning:
    ``Tracking(True)`` tracks, ``Tracking(False)`` keeps the box at a fixed place on the
    detector. Without this attr, tracking is on, as on JSOC.
    """


class Register(_Flag):
    """
    Register every cutout to sub-pixel accuracy (``im_patch`` flag ``r``; default off).

    Registered cutouts have the target on the array centre and ``CROTA2`` of 0, so a movie
    made from them does not jump by a pixel as the box moves.
    """


class Crop(_Flag):
    """
    Set the pixels off the solar limb to NaN (``im_patch`` flag ``c``; default off).
    """


class Scale(_Flag):
    """
    Bring AIA images to level 1.5 on JSOC before cutting them (``aia_scale``; default off).

    JSOC's ``aia_scale`` step rescales every image to 0.6 arcseconds per pixel, rotates it
    to solar north up and centres the Sun, as ``aia_prep`` does; im_patch then cuts the
    level-1.5 image, so pixel centres and sizes refer to the 0.6"/px image. The step is named
    as the JSOC export form names it: ``aia_scale_orig`` for ``aia.lev1`` and
    ``aia_scale_aialev1`` for the other ``aia.lev1_*`` series. AIA only: HMI series are
    refused.
    """


class Wavelength(DataAttr):
    """
    One or more AIA channels, all requested in one export.

    Parameters
    ----------
    *wavelengths : `~astropy.units.Quantity`
        The channels, e.g. ``Wavelength(171 * u.AA, 193 * u.AA, 211 * u.AA, 304 * u.AA)``.
        A single Quantity array works too.

    Notes
    -----
    The core ``a.Wavelength`` is understood as well: one value selects that channel, a
    range selects every channel of the series inside it.
    """

    def __init__(self, *wavelengths):
        super().__init__()
        values = []
        for wavelength in wavelengths:
            if not isinstance(wavelength, u.Quantity):
                raise TypeError(f"Wavelength: {wavelength!r} is not a Quantity; write e.g. 171 * u.AA.")
            try:
                values.extend(wavelength.to(u.AA, equivalencies=u.spectral()).ravel())
            except u.UnitConversionError:
                raise u.UnitsError(
                    f"Wavelength: {wavelength} is not a wavelength; write e.g. 171 * u.AA."
                ) from None
        if not values:
            raise ValueError("Wavelength: give at least one channel, e.g. Wavelength(171 * u.AA).")
        self.wavelengths = tuple(values)

    def collides(self, other):
        return isinstance(other, self.__class__ | a.Wavelength)

    def __repr__(self):
        channels = ", ".join(f"{w.value:g}" for w in self.wavelengths)
        return f"<{self.__module__}.{self.__class__.__name__}({channels} Angstrom)>"


# Attrs of this module: at least one of them in a query makes it ours.
CUTOUT_ATTRS = (Cutout, Tracking, Register, Crop, Scale, Wavelength)

walker = AttrWalker()


@walker.add_creator(AttrOr)
def _create_or(wlk, tree):
    blocks = []
    for sub in tree.attrs:
        blocks.extend(wlk.create(sub))
    return blocks


@walker.add_creator(AttrAnd, DataAttr)
def _create_and(wlk, tree):
    params = {}
    wlk.apply(tree, params)
    return [params]


@walker.add_applier(AttrAnd)
def _apply_and(wlk, tree, params):
    for attr in tree.attrs:
        wlk.apply(attr, params)


@walker.add_applier(DataAttr)
def _apply_unknown(wlk, attr, params):
    raise ValueError(
        f"{attr!r} cannot be used in a JSOC cutout query; the attrs understood are a.Time, "
        "a.jsoc.Series, a.jsoc.Notify, a.jsoc.Segment, a.Wavelength, a.Sample and "
        "a.jsoc_cutout.Cutout, Tracking, Register, Crop, Scale and Wavelength."
    )


@walker.add_applier(a.jsoc.Segment)
def _apply_segment(wlk, attr, params):
    # JSOC takes several segments in one record set ({image,spikes}).
    params.setdefault("segments", []).append(attr.value)


def _store(key):
    def apply(wlk, attr, params):
        params[key] = attr

    return apply


for _attr_type, _key in (
    (a.Time, "time"),
    (a.jsoc.Series, "series"),
    (a.jsoc.Notify, "notify"),
    (a.Wavelength, "wavelength"),
    (a.Sample, "sample"),
    (Cutout, "cutout"),
    (Tracking, "tracking"),
    (Register, "register"),
    (Crop, "crop"),
    (Scale, "scale"),
    (Wavelength, "wavelength"),
):
    walker.add_applier(_attr_type)(_store(_key))
