"""Tests of `sunpy_jsoc_cutout.retrieve`: downloads from a loopback server, tar safety, FITS checks."""

import functools
import io
import json
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from sunpy_jsoc_cutout.retrieve import PARTIAL_DIR, fetch_export, verify_fits

RID = "JSOC_20140205_001"
DIR = "SUM1/D1000001/S00000"
NAMES = [
    "aia.lev1_euv_12s.2014-02-05T080001Z.171.image.fits",
    "aia.lev1_euv_12s.2014-02-05T080001Z.193.image.fits",
    "aia.lev1_euv_12s.2014-02-05T080013Z.171.image.fits",
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server serving tmp_path/"served"; yields (root folder, base URL)."""
    root = tmp_path / "served"
    (root / DIR).mkdir(parents=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def out(tmp_path):
    return tmp_path / "out"


def fits_bytes(value=1.0, checksum=True):
    hdu = fits.PrimaryHDU(np.full((20, 30), value, dtype=np.float32))
    hdu.header["T_REC"] = "2014-02-05T08:00:01Z"
    buffer = io.BytesIO()
    hdu.writeto(buffer, checksum=checksum)
    return buffer.getvalue()


def corrupt(data):
    data = bytearray(data)
    data[2880 + 100 : 2880 + 104] = b"\x7f\x7f\x7f\x7f"  # in the data unit, after the header
    return bytes(data)


def status_body(names=NAMES, tar=False):
    body = {
        "version": "1",
        "requestid": RID,
        "method": "url-tar" if tar else "url",
        "protocol": "FITS",
        "count": str(len(names)),
        "size": "1",
        "dir": f"/{DIR}",
        "status": "0",
        "data": [{"record": f"aia.lev1_euv_12s_mod[{i}]", "filename": n} for i, n in enumerate(names)],
    }
    if tar:
        body["tarfile"] = f"/{DIR}/{RID}.tar"
    return body


def add(tar, name, data=b"", **info):
    member = tarfile.TarInfo(name)
    member.size = len(data)
    for key, value in info.items():
        setattr(member, key, value)
    tar.addfile(member, io.BytesIO(data) if data else None)


def write_tar(root, members):
    """Write the export's tar; members: list of (name, bytes) or (name, None, tarinfo-attrs)."""
    path = root / DIR / f"{RID}.tar"
    with tarfile.open(path, "w") as tar:
        add(tar, ".", type=tarfile.DIRTYPE, mode=0o755)
        for name, data, *info in members:
            add(tar, name, data or b"", **(info[0] if info else {}))
    return path


def jsoc_tar_members(files):
    index = json.dumps(status_body(list(files), tar=True)).encode()
    return [
        *[(f"./{name}", data) for name, data in files.items()],
        ("./index.json", index),
        ("./index.txt", b"# index\n"),
        ("./index.html", b"<html></html>"),
        (f"./{RID}.drmsrun", b"#!/bin/sh\n"),
    ]


def fetch(body, urls, out, **kwargs):
    return fetch_export(body, urls, lambda name: out / name, progress=False, **kwargs)


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def error_text(results):
    return "\n".join(f"{e.filepath_partial} {e.url} {e.exception}" for e in results.errors)


# -- verify_fits ------------------------------------------------------------------------------


def test_verify_fits_accepts_a_file_with_good_checksums(tmp_path):
    path = tmp_path / "good.fits"
    path.write_bytes(fits_bytes())
    assert verify_fits(path) is None


def test_verify_fits_accepts_a_file_without_checksums(tmp_path):
    path = tmp_path / "plain.fits"
    path.write_bytes(fits_bytes(checksum=False))
    assert verify_fits(path) is None


def test_verify_fits_reports_a_checksum_mismatch(tmp_path):
    path = tmp_path / "bad.fits"
    path.write_bytes(corrupt(fits_bytes()))
    assert "verification failed" in verify_fits(path)


def test_verify_fits_reports_a_truncated_file(tmp_path):
    path = tmp_path / "short.fits"
    path.write_bytes(fits_bytes(checksum=False)[: 2880 + 1000])
    assert verify_fits(path) is not None


def test_verify_fits_reports_a_file_that_is_not_fits(tmp_path):
    path = tmp_path / "page.fits"
    path.write_bytes(b"<html><body>Service unavailable</body></html>")
    assert "not a readable FITS file" in verify_fits(path)


# -- url-tar exports --------------------------------------------------------------------------


def test_tar_export_extracts_the_fits_files_and_skips_jsocs_index_quietly(server, out):
    root, base = server
    write_tar(root, jsoc_tar_members({name: fits_bytes(i) for i, name in enumerate(NAMES)}))
    results = fetch(status_body(tar=True), [f"{base}{DIR}/{RID}.tar"], out)
    assert results.errors == [], error_text(results)
    assert sorted(results) == sorted(str(out / name) for name in NAMES)
    assert files_under(out) == sorted(NAMES)  # no tar, index or partial folder left behind
    assert fits.getdata(out / NAMES[1])[0, 0] == 1.0


def test_tar_members_that_are_unsafe_are_refused_and_reported(server, out, tmp_path):
    root, base = server
    members = [
        *jsoc_tar_members({NAMES[0]: fits_bytes()}),
        ("../evil.fits", fits_bytes()),
        ("/tmp/abs-evil.fits", fits_bytes()),
        ("sub/dir.fits", fits_bytes()),
        ("./link.fits", None, {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}),
        ("./hard.fits", None, {"type": tarfile.LNKTYPE, "linkname": NAMES[0]}),
        ("./dev.fits", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
        ("./fifo.fits", None, {"type": tarfile.FIFOTYPE}),
        ("./payload.exe", b"MZ"),
    ]
    write_tar(root, members)
    results = fetch(status_body([NAMES[0]], tar=True), [f"{base}{DIR}/{RID}.tar"], out)
    assert list(results) == [str(out / NAMES[0])]
    assert files_under(out) == [NAMES[0]]
    assert not (tmp_path / "evil.fits").exists()
    assert not Path("/tmp/abs-evil.fits").exists()
    refused = sorted(error.filepath_partial for error in results.errors)
    assert refused == sorted(
        [
            "../evil.fits",
            "/tmp/abs-evil.fits",
            "sub/dir.fits",
            "./link.fits",
            "./hard.fits",
            "./dev.fits",
            "./fifo.fits",
            "./payload.exe",
        ]
    )
    reasons = error_text(results)
    assert "unsafe path" in reasons
    assert "link to '/etc/passwd'" in reasons
    assert "device" in reasons


def test_corrupted_fits_in_a_tar_is_reported_not_returned(server, out):
    root, base = server
    files = {NAMES[0]: fits_bytes(), NAMES[1]: corrupt(fits_bytes()), NAMES[2]: fits_bytes()}
    write_tar(root, jsoc_tar_members(files))
    results = fetch(status_body(tar=True), [f"{base}{DIR}/{RID}.tar"], out)
    assert sorted(results) == sorted([str(out / NAMES[0]), str(out / NAMES[2])])
    assert not (out / NAMES[1]).exists()
    (error,) = results.errors
    assert error.filepath_partial == str(out / NAMES[1])
    assert "verification failed" in str(error.exception)
    assert (out / PARTIAL_DIR / RID).is_dir()  # kept to look at


def test_a_file_listed_in_the_index_but_missing_from_the_tar_is_reported(server, out):
    root, base = server
    write_tar(root, jsoc_tar_members({NAMES[0]: fits_bytes()}))
    results = fetch(status_body(NAMES[:2], tar=True), [f"{base}{DIR}/{RID}.tar"], out)
    assert list(results) == [str(out / NAMES[0])]
    (error,) = results.errors
    assert NAMES[1] in error.filepath_partial
    assert "not found in the tar" in str(error.exception)


def test_a_truncated_tar_keeps_what_was_complete_and_reports_the_damage(server, out):
    root, base = server
    path = write_tar(root, jsoc_tar_members({NAMES[0]: fits_bytes(), NAMES[1]: fits_bytes()}))
    data = path.read_bytes()
    path.write_bytes(data[: 512 * 2 + 2880 * 2 + 512 + 700])  # inside the second FITS member
    results = fetch(status_body(NAMES[:2], tar=True), [f"{base}{DIR}/{RID}.tar"], out)
    assert list(results) == [str(out / NAMES[0])]
    assert "damaged or truncated" in error_text(results)
    assert not (out / NAMES[1]).exists()


# -- url exports ------------------------------------------------------------------------------


def test_url_export_downloads_every_file(server, out):
    root, base = server
    for i, name in enumerate(NAMES):
        (root / DIR / name).write_bytes(fits_bytes(i))
    results = fetch(status_body(), [f"{base}{DIR}/{name}" for name in NAMES], out)
    assert results.errors == [], error_text(results)
    assert list(results) == [str(out / name) for name in NAMES]
    assert results.urls == [f"{base}{DIR}/{name}" for name in NAMES]
    assert files_under(out) == sorted(NAMES)
    assert fits.getdata(out / NAMES[2])[0, 0] == 2.0


def test_url_export_reports_a_corrupted_file(server, out):
    root, base = server
    (root / DIR / NAMES[0]).write_bytes(fits_bytes())
    (root / DIR / NAMES[1]).write_bytes(corrupt(fits_bytes()))
    results = fetch(status_body(NAMES[:2]), [f"{base}{DIR}/{name}" for name in NAMES[:2]], out)
    assert list(results) == [str(out / NAMES[0])]
    (error,) = results.errors
    assert "verification failed" in str(error.exception)
    assert not (out / NAMES[1]).exists()


def test_url_export_reports_a_missing_file(server, out):
    root, base = server
    (root / DIR / NAMES[0]).write_bytes(fits_bytes())
    results = fetch(status_body(NAMES[:2]), [f"{base}{DIR}/{name}" for name in NAMES[:2]], out)
    assert list(results) == [str(out / NAMES[0])]
    (error,) = results.errors
    assert error.filepath_partial == str(out / NAMES[1])
    assert "HTTP 404" in str(error.exception)


def test_targets_in_new_folders_are_created(server, tmp_path):
    root, base = server
    (root / DIR / NAMES[0]).write_bytes(fits_bytes())
    results = fetch_export(
        status_body(NAMES[:1]),
        [f"{base}{DIR}/{NAMES[0]}"],
        lambda name: tmp_path / "a" / "b" / name,
        progress=False,
    )
    assert list(results) == [str(tmp_path / "a" / "b" / NAMES[0])]


def test_an_existing_target_is_kept_unless_overwrite_is_asked(server, out):
    root, base = server
    (root / DIR / NAMES[0]).write_bytes(fits_bytes(5.0))
    out.mkdir()
    (out / NAMES[0]).write_bytes(fits_bytes(1.0))
    url = f"{base}{DIR}/{NAMES[0]}"
    assert list(fetch(status_body(NAMES[:1]), [url], out)) == [str(out / NAMES[0])]
    assert fits.getdata(out / NAMES[0])[0, 0] == 1.0
    assert list(fetch(status_body(NAMES[:1]), [url], out, overwrite=True)) == [str(out / NAMES[0])]
    assert fits.getdata(out / NAMES[0])[0, 0] == 5.0


def test_two_files_with_one_target_are_reported(server, tmp_path):
    root, base = server
    for name in NAMES[:2]:
        (root / DIR / name).write_bytes(fits_bytes())
    results = fetch_export(
        status_body(NAMES[:2]),
        [f"{base}{DIR}/{name}" for name in NAMES[:2]],
        lambda name: tmp_path / "same.fits",
        progress=False,
    )
    assert list(results) == [str(tmp_path / "same.fits")]
    assert "same target" in error_text(results)
