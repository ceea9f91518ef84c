"""The coordinate work behind cutout centres and boxes, checked against sunpy.coordinates directly."""

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sunpy.coordinates import frames, sun

from sunpy_jsoc_cutout import geometry

T0 = Time("2014-02-05T08:00:00")


def test_location_kind_follows_the_frame():
    assert geometry.location_kind(SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame="helioprojective")) == "arcsec"
    assert geometry.location_kind(SkyCoord(0 * u.deg, 0 * u.deg, frame="heliographic_stonyhurst")) == "stony"
    assert (
        geometry.location_kind(SkyCoord(0 * u.deg, 0 * u.deg, frame="heliographic_carrington")) == "carrlong"
    )
    assert geometry.location_kind((1, 2) * u.pix) == "pixels"


def test_location_kind_refuses_frames_im_patch_has_no_units_for():
    with pytest.raises(ValueError, match="cannot be sent to im_patch"):
        geometry.location_kind(SkyCoord(10 * u.deg, 10 * u.deg, frame="icrs"))


def test_stonyhurst_longitude_of_a_carrington_point_is_its_distance_from_l0():
    lon, lat = geometry.stonyhurst_lonlat(
        SkyCoord(100 * u.deg, 10 * u.deg, frame=frames.HeliographicCarrington(obstime=T0, observer="earth")),
        T0,
    )
    assert lon == pytest.approx((100 * u.deg - sun.L0(T0)).to_value(u.deg), abs=1e-3)
    assert lat == pytest.approx(10)


def test_carrington_longitude_of_a_stonyhurst_point_adds_l0():
    lon, _ = geometry.carrington_lonlat(
        SkyCoord(-20 * u.deg, 0 * u.deg, frame=frames.HeliographicStonyhurst(obstime=T0)), T0
    )
    assert lon == pytest.approx((sun.L0(T0) - 20 * u.deg).to_value(u.deg) % 360, abs=1e-3)


def test_carrington_without_observer_is_taken_as_seen_from_earth():
    lon, _ = geometry.carrington_lonlat(
        SkyCoord(100 * u.deg, 0 * u.deg, frame="heliographic_carrington", obstime=T0), T0
    )
    assert lon == pytest.approx(100)


def test_carrington_rotation_at_meridian_is_the_crossing_nearest_t_ref():
    for lon in (0.5, 84, 170, 359.5):
        car_rot = geometry.carrington_rotation_at_meridian(lon, T0)
        gaps = {
            n: abs((sun.carrington_rotation_time(n, longitude=lon * u.deg) - T0).to_value(u.day))
            for n in (car_rot - 1, car_rot, car_rot + 1)
        }
        assert min(gaps, key=gaps.get) == car_rot


def test_near_side_test_agrees_with_the_meridian_distance():
    def at(lon):
        return SkyCoord(lon * u.deg, 0 * u.deg, frame=frames.HeliographicStonyhurst(obstime=T0))

    assert geometry.is_on_near_side(at(80), T0)
    assert not geometry.is_on_near_side(at(100), T0)
    assert not geometry.is_on_near_side(at(180), T0)


def test_near_side_follows_a_carrington_point_as_the_sun_turns():
    point = SkyCoord(sun.L0(T0), 0 * u.deg, frame=frames.HeliographicCarrington(obstime=T0, observer="earth"))
    assert geometry.is_on_near_side(point, T0)
    assert not geometry.is_on_near_side(point, T0 + 10 * u.day)  # about 130 degrees round


def test_sdo_view_of_a_stonyhurst_point_matches_sunpy():
    point = SkyCoord(30 * u.deg, 20 * u.deg, frame=frames.HeliographicStonyhurst(obstime=T0))
    seen = geometry.sdo_helioprojective(point, T0)
    expected = SkyCoord(
        30 * u.deg, 20 * u.deg, sun.constants.radius, frame=frames.HeliographicStonyhurst(obstime=T0)
    ).transform_to(frames.Helioprojective(observer="earth", obstime=T0))
    assert seen.Tx.to_value(u.arcsec) == pytest.approx(expected.Tx.to_value(u.arcsec), abs=1e-3)


def test_degree_box_is_sized_at_the_central_meridian():
    width, height = geometry.degrees_box_in_arcsec(10 * u.deg, 10 * u.deg, 0 * u.deg, T0)
    # 10 degrees at disk centre: about 2 sin(5 deg) solar radii.
    radius = sun.angular_radius(T0).to_value(u.arcsec)
    assert width.to_value(u.arcsec) == pytest.approx(2 * radius * 0.0871557, rel=0.01)
    assert height.to_value(u.arcsec) == pytest.approx(2 * radius * 0.0871557, rel=0.02)


def test_box_in_pixels_uses_the_scaled_plate_scale_when_given():
    assert geometry.box_in_pixels(
        300 * u.arcsec, 60 * u.arcsec, "AIA", plate_scale=0.6 * u.arcsec / u.pix
    ) == (
        pytest.approx(500),
        pytest.approx(100),
    )
    assert geometry.box_in_pixels(504 * u.arcsec, 10 * u.pix, "HMI") == (pytest.approx(1000), 10)
