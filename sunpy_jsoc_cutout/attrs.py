"""
The attrs of ``a.jsoc_cutout`` and the walker that turns a Fido query into plain values.

Importing `sunpy_jsoc_cutout` mounts this module as ``sunpy.net.attrs.jsoc_cutout``. The
attrs only hold and check what the user typed; what they mean for JSOC is decided in
`sunpy_jsoc_cutout.plan`.
"""

import astropy.units as u
from astropy.coordinates import SkyCoord
from sunpy.net import attrs as a
from sunpy.net.attr import AttrAnd, AttrOr, AttrWalker, DataAttr, SimpleAttr

__all__ = ["Crop", "Cutout", "Register", "Scale", "Tracking", "Wavelength"]

_LENGTH_UNITS = (u.pix, u.arcsec, u.deg)


def __dir__():
    # Keep tab-completion on a.jsoc_cutout to the attrs themselves.
    return __all__


class Cutout(DataAttr):
    """
    The region JSOC's ``im_patch`` cuts out of every image.

    Give either a centre with a box size, or two opposite corners.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord` or `~astropy.units.Quantity`, optional
        The centre of the box: a coordinate in a helioprojective frame (sent as
        ``locunits=arcsec``, seen from SDO), or a pixel pair ``(x, y) * u.pix`` on the
        detector (``locunits=pixels``). Its ``obstime``, when set, is the reference time
        ``t_ref`` at which the centre applies; otherwise the start of the query is used.
    width, height : `~astropy.units.Quantity`, optional
        The size of the box, in pixels, arcseconds or degrees (``boxunits``).
    bottom_left, top_right : `~astropy.coordinates.SkyCoord`, optional
        Two opposite corners of the box, instead of ``center``, ``width`` and ``height``,
        as sunpy's ``a.jsoc.Cutout`` takes them.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from sunpy.coordinates import frames
    >>> import sunpy_jsoc_cutout.attrs as jc
    >>> centre = SkyCoord(100 * u.arcsec, 200 * u.arcsec, frame=frames.Helioprojective,
    ...                   observer="earth", obstime="2014-02-05T08:00")
    >>> jc.Cutout(center=centre, width=500 * u.pix, height=500 * u.pix)
    <sunpy_jsoc_cutout.attrs.Cutout(500 pix x 500 pix around ...)>
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
                if not isinstance(corner, SkyCoord) or not corner.isscalar:
                    raise TypeError(f"Cutout: {name} must be a scalar SkyCoord, got {corner!r}.")
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
                    raise ValueError(f"Cutout: {name} must be positive, got {size}.")
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


def _check_center(center):
    if isinstance(center, SkyCoord):
        if not center.isscalar:
            raise TypeError("Cutout: center must be a single coordinate, not an array.")
        return
    if isinstance(center, u.Quantity) and center.unit == u.pix and center.shape == (2,):
        return
    raise TypeError(
        f"Cutout: center must be a SkyCoord or a pixel pair such as (2048, 2048) * u.pix, got {center!r}."
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
    Bring AIA images to level 1.5 on JSOC (``aia_scale_*``; default off).

    Not yet available: it arrives with the full set of cutout options.
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
# Core and a.jsoc attrs we understand beside them.
CORE_ATTRS = (a.Time, a.jsoc.Series, a.jsoc.Notify, a.jsoc.Segment, a.Wavelength, a.Sample)

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
