"""
Against the real JSOC: skipped unless pytest runs with ``--remote-data=any``.

The export test also needs ``JSOC_EMAIL`` set to an address registered with JSOC.
"""

import os

import astropy.units as u
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401 - registers the client

START = "2014-02-05T08:00:00"
CENTRE = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=START))


def query(minutes=1):
    return (
        a.Time(START, f"2014-02-05T08:{minutes:02d}:00"),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(171 * u.AA, 304 * u.AA),
        a.jsoc_cutout.Cutout(center=CENTRE, width=100 * u.pix, height=100 * u.pix),
    )


@pytest.fixture(autouse=True)
def real_jsoc(monkeypatch):
    monkeypatch.delenv("SUNPY_JSOC_CUTOUT_SERVER", raising=False)


@pytest.mark.remote_data
def test_search_lists_records_of_every_channel():
    res = Fido.search(*query())
    table = res[0]
    # One minute of 12 s slots, two channels.
    assert 8 <= len(table) <= 12
    assert set(table["Wavelength"].to_value(u.AA)) == {171, 304}


@pytest.mark.remote_data
@pytest.mark.skipif(
    "JSOC_EMAIL" not in os.environ, reason="needs JSOC_EMAIL, an address registered with JSOC"
)
def test_fetch_returns_cutouts_of_the_requested_size(tmp_path):
    res = Fido.search(*query())
    files = Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert not files.errors
    assert len(files) == len(res[0])
    for path in files:
        assert sunpy.map.Map(path).data.shape == (100, 100)
