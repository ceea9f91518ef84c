"""End to end through Fido against the offline JSOC, over real HTTP."""

import re

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

from sunpy_jsoc_cutout import JSOCCutoutClient

START = "2014-02-05T08:00:00"
CENTRE = SkyCoord(
    -200 * u.arcsec, 150 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=START)
)
FOUR_CHANNELS = a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA, 211 * u.AA, 304 * u.AA)


def cutout_query(*extra, minutes=3, width=120 * u.pix, height=80 * u.pix):
    end = f"2014-02-05T08:{minutes:02d}:00"
    return (
        a.Time(START, end),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=CENTRE, width=width, height=height),
        *extra,
    )


def test_four_wavelength_query_costs_one_export_request(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(FOUR_CHANNELS))
    files = Fido.fetch(res, path=tmp_path / "{file}", progress=False)

    assert jsoc_env.calls["exp_request"] == 1
    (request,) = jsoc_env.exports.values()
    assert "[171,193,211,304]" in request.ds
    assert not files.errors
    # 08:00-08:03 at 60 s holds the slots of 08:00, 08:01, 08:02 and 08:03 (both ends count).
    assert len(files) == len(res[0]) == 4 * 4


def test_fetched_files_are_cutouts_with_im_patch_keywords_and_wcs(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(FOUR_CHANNELS))
    files = Fido.fetch(res, path=tmp_path / "{file}", progress=False)

    channels = set()
    for path in files:
        assert path.endswith(".fits")
        header = fits.getheader(path, ext=_image_hdu(path))
        assert header["CONTENT"] == "Tracked Extracted Patches, made by im_patch"
        for key in ("HGBOXUNITS", "HGLOCUNITS", "HGWIDE", "HGHIGH", "HGCRLN", "HGCRLT", "RequestID"):
            assert key in header
        cutout = sunpy.map.Map(path)
        assert cutout.data.shape == (80, 120)
        channels.add(int(cutout.wavelength.to_value(u.AA)))
    assert channels == {171, 193, 211, 304}

    # The box of the first frame (t_ref) is centred on the requested point.
    first = sunpy.map.Map(sorted(files)[0])
    middle = first.wcs.pixel_to_world((120 - 1) / 2, (80 - 1) / 2)
    assert middle.separation(CENTRE.transform_to(middle.frame)) < 1.5 * first.scale[0] * u.pix


def test_files_land_under_the_path_template(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), minutes=1))
    files = Fido.fetch(res, path=str(tmp_path / "cutouts" / "{file}"), progress=False)
    assert files
    assert all(str(tmp_path / "cutouts") in f for f in files)
    assert sorted(p.name for p in (tmp_path / "cutouts").iterdir()) == sorted(
        f.rsplit("/", 1)[-1] for f in files
    )


def test_many_records_come_as_one_tar_and_few_as_files(jsoc_env, tmp_path):
    few = Fido.search(*cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), minutes=2))
    many = Fido.search(*cutout_query(FOUR_CHANNELS, minutes=4))
    Fido.fetch(few, path=tmp_path / "few" / "{file}", progress=False)
    Fido.fetch(many, path=tmp_path / "many" / "{file}", progress=False)
    methods = [export.method for export in jsoc_env.exports.values()]
    assert methods == ["url", "url-tar"]
    assert not any(p.suffix == ".tar" for p in (tmp_path / "many").iterdir())


def test_search_table_shows_records_and_cutouts(jsoc_env):
    res = Fido.search(*cutout_query(FOUR_CHANNELS))
    table = res[0]
    assert isinstance(table.client, JSOCCutoutClient)
    assert table["T_REC"][0].startswith("2014-02-05T08:0")
    assert set(table["Wavelength"].to_value(u.AA)) == {171, 193, 211, 304}
    assert all(cutout.startswith('120x80 px at (-200, 150)", tracked') for cutout in table["Cutout"])
    # A size estimate of the cutouts (120x80 floats), not of the 4096x4096 frames.
    assert table.total_size() < 12 * 0.1 * u.Mbyte
    text = str(res)
    assert "Cutout" in text
    assert "Export" not in str(table)
    assert "<table" in table._repr_html_()
    assert "Export" in table.show().colnames


def test_search_costs_no_export_and_reads_series_once(jsoc_env):
    Fido.search(*cutout_query(FOUR_CHANNELS))
    assert jsoc_env.calls["exp_request"] == 0
    assert jsoc_env.calls["series_struct"] == 1
    assert jsoc_env.calls["rs_list"] == 1


def test_or_of_wavelengths_makes_one_export_per_block(jsoc_env, tmp_path):
    query = cutout_query(
        a.jsoc_cutout.Wavelength(171 * u.AA) | a.jsoc_cutout.Wavelength(193 * u.AA), minutes=1
    )
    res = Fido.search(*query)
    assert len(res) == 2
    files = Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert jsoc_env.calls["exp_request"] == 2
    assert len(files) == len(res[0]) + len(res[1]) == 2 * 2


def test_request_ids_are_kept_on_the_result_table(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), minutes=1))
    Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert res[0].request_ids == list(jsoc_env.exports)


def test_notify_attr_overrides_jsoc_email(jsoc_env, tmp_path):
    res = Fido.search(
        *cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), a.jsoc.Notify("me@example.org"), minutes=1)
    )
    Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    (request,) = jsoc_env.exports.values()
    assert request.notify == "me@example.org"


def test_fetch_without_notify_address_fails_before_any_request(jsoc_env, tmp_path, monkeypatch):
    monkeypatch.delenv("JSOC_EMAIL")
    res = Fido.search(*cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), minutes=1))
    with pytest.raises(ValueError, match="JSOC needs a notify address"):
        Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert jsoc_env.calls["exp_request"] == 0


def test_unregistered_notify_address_fails_before_any_export(jsoc_env, tmp_path):
    res = Fido.search(
        *cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), a.jsoc.Notify("nobody@example.com"), minutes=1)
    )
    with pytest.raises(ValueError, match=re.escape("JSOC does not accept 'nobody@example.com'")):
        Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    assert jsoc_env.calls["exp_request"] == 0


def test_path_with_unknown_fields_fails_before_any_export(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), minutes=1))
    with pytest.raises(ValueError, match=re.escape("can only be placed with {file}")):
        Fido.fetch(res, path=str(tmp_path / "{instrument}" / "{file}"), progress=False)
    assert jsoc_env.calls["exp_request"] == 0


def test_bad_query_fails_before_any_request(jsoc_env, fido_search):
    with pytest.raises(ValueError, match=re.escape("1600 Angstrom is not a channel of aia.lev1_euv_12s")):
        fido_search(*cutout_query(a.jsoc_cutout.Wavelength(1600 * u.AA)))
    assert jsoc_env.calls["exp_request"] == 0
    assert jsoc_env.calls["rs_list"] == 0


def test_server_argument_points_one_client_at_a_server(offline_jsoc, monkeypatch, tmp_path):
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_SERVER", "http://127.0.0.1:9/")  # nothing listens there
    client = JSOCCutoutClient(server=offline_jsoc.url)
    res = client.search(*cutout_query(a.jsoc_cutout.Wavelength(171 * u.AA), minutes=1))
    assert len(res) == 2  # 08:00 and 08:01
    assert offline_jsoc.calls["rs_list"] == 1


def test_crop_blanks_off_limb_pixels(jsoc_env, tmp_path):
    limb = SkyCoord(
        0 * u.arcsec, 950 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=START)
    )
    res = Fido.search(
        a.Time(START, "2014-02-05T08:00:10"),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(171 * u.AA),
        a.jsoc_cutout.Cutout(center=limb, width=200 * u.pix, height=200 * u.pix),
        a.jsoc_cutout.Crop(True),
    )
    files = Fido.fetch(res, path=tmp_path / "{file}", progress=False)
    data = sunpy.map.Map(files[0]).data
    assert np.isnan(data).any()
    assert np.isfinite(data).any()


def _image_hdu(path):
    with fits.open(path) as hdus:
        return next(i for i, hdu in enumerate(hdus) if hdu.data is not None)
