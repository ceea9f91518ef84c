"""The a.jsoc_cutout attrs, the walker and the claim rule."""

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from sunpy.net import attrs as a
from sunpy.net.jsoc import JSOCClient

import sunpy_jsoc_cutout
from sunpy_jsoc_cutout.attrs import walker

CENTRE = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame="helioprojective", observer="earth", obstime="2014-02-05")
TIME = a.Time("2014-02-05T08:00", "2014-02-05T09:00")
SERIES = a.jsoc.Series("aia.lev1_euv_12s")
CUTOUT = a.jsoc_cutout.Cutout(center=CENTRE, width=100 * u.pix, height=100 * u.pix)


def test_import_mounts_the_attrs_module():
    assert a.jsoc_cutout is sunpy_jsoc_cutout.attrs
    assert {"Cutout", "Tracking", "Register", "Crop", "Scale", "Wavelength"} <= set(dir(a.jsoc_cutout))


def test_client_claims_a_query_with_a_cutout_attr_and_jsoc_client_declines_it():
    query = (TIME, SERIES, CUTOUT)
    assert sunpy_jsoc_cutout.JSOCCutoutClient._can_handle_query(*query)
    assert not JSOCClient._can_handle_query(*query)


@pytest.mark.parametrize(
    "attr",
    [
        a.jsoc_cutout.Tracking(False),
        a.jsoc_cutout.Register(True),
        a.jsoc_cutout.Crop(True),
        a.jsoc_cutout.Wavelength(171 * u.AA),
    ],
)
def test_any_cutout_attr_makes_the_query_ours(attr):
    assert sunpy_jsoc_cutout.JSOCCutoutClient._can_handle_query(TIME, SERIES, attr)
    assert not JSOCClient._can_handle_query(TIME, SERIES, attr)


def test_plain_jsoc_query_stays_with_sunpys_client():
    query = (
        TIME,
        SERIES,
        a.Wavelength(171 * u.AA),
        a.jsoc.Cutout(CENTRE, width=100 * u.arcsec, height=100 * u.arcsec),
    )
    assert not sunpy_jsoc_cutout.JSOCCutoutClient._can_handle_query(*query)
    assert JSOCClient._can_handle_query(*query)


def test_walker_gives_one_block_per_or_branch():
    query = (
        TIME & SERIES & CUTOUT & (a.jsoc_cutout.Wavelength(171 * u.AA) | a.jsoc_cutout.Wavelength(193 * u.AA))
    )
    blocks = walker.create(query)
    assert len(blocks) == 2
    assert [b["wavelength"].wavelengths[0].value for b in blocks] == [171, 193]
    assert all(b["cutout"] is CUTOUT for b in blocks)


def test_walker_keeps_several_segments():
    (block,) = walker.create(TIME & SERIES & CUTOUT & a.jsoc.Segment("image") & a.jsoc.Segment("spikes"))
    assert block["segments"] == ["image", "spikes"]


def test_unknown_attr_is_refused_with_the_list_of_understood_ones():
    with pytest.raises(
        ValueError, match=r"cannot be used in a JSOC cutout query; the attrs understood are a\.Time"
    ):
        walker.create(TIME & SERIES & CUTOUT & a.Instrument("AIA"))


def test_wavelength_takes_several_quantities_and_arrays():
    assert [w.value for w in a.jsoc_cutout.Wavelength(171 * u.AA, [193, 211] * u.AA).wavelengths] == [
        171,
        193,
        211,
    ]
    assert a.jsoc_cutout.Wavelength(30.4 * u.nm).wavelengths[0].to_value(u.AA) == pytest.approx(304)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"center": CENTRE, "width": 100 * u.pix}, ValueError, "center=, width= and height= are all needed"),
        ({"center": CENTRE, "width": 0 * u.pix, "height": 1 * u.pix}, ValueError, "width must be positive"),
        (
            {"center": CENTRE, "width": -5 * u.arcsec, "height": 1 * u.pix},
            ValueError,
            "width must be positive",
        ),
        ({"center": CENTRE, "width": 5 * u.m, "height": 1 * u.pix}, u.UnitsError, "width has unit m"),
        ({"center": CENTRE, "width": 5, "height": 1 * u.pix}, TypeError, "width must be a scalar Quantity"),
        (
            {"center": (1, 2), "width": 5 * u.pix, "height": 1 * u.pix},
            TypeError,
            "center must be a SkyCoord, a pixel pair",
        ),
        ({"bottom_left": CENTRE}, ValueError, "must be given together"),
        ({"bottom_left": CENTRE, "top_right": CENTRE, "width": 5 * u.pix}, ValueError, "not both"),
    ],
)
def test_cutout_refuses_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        a.jsoc_cutout.Cutout(**kwargs)


@pytest.mark.parametrize(
    "flag", [a.jsoc_cutout.Tracking, a.jsoc_cutout.Register, a.jsoc_cutout.Crop, a.jsoc_cutout.Scale]
)
def test_flags_take_only_booleans(flag):
    assert flag(True).value is True
    with pytest.raises(TypeError, match="takes True or False"):
        flag("yes")


def test_wavelength_refuses_non_wavelengths():
    with pytest.raises(u.UnitsError, match="is not a wavelength"):
        a.jsoc_cutout.Wavelength(5 * u.s)
    with pytest.raises(TypeError, match="is not a Quantity"):
        a.jsoc_cutout.Wavelength(171)


def test_active_region_is_offered_beside_the_attrs():
    assert "ActiveRegion" in dir(a.jsoc_cutout)


@pytest.mark.parametrize(
    ("number", "error", "message"),
    [
        (0, ValueError, "must be positive"),
        (11967.0, TypeError, "must be an integer"),
        (True, TypeError, "integer"),
    ],
)
def test_active_region_refuses_what_is_not_a_noaa_number(number, error, message):
    with pytest.raises(error, match=message):
        a.jsoc_cutout.ActiveRegion(number)


def test_cutout_takes_an_active_region_as_centre():
    cutout = a.jsoc_cutout.Cutout(center=a.jsoc_cutout.ActiveRegion(11967), width=5 * u.deg, height=5 * u.deg)
    assert cutout.center == a.jsoc_cutout.ActiveRegion(11967)


def test_cutout_takes_pixel_corners():
    cutout = a.jsoc_cutout.Cutout(bottom_left=(10, 20) * u.pix, top_right=(110, 220) * u.pix)
    assert cutout.top_right[1] == 220 * u.pix
