"""Tests of `sunpy_jsoc_cutout.retrieve`: downloads from a loopback server, tar safety, FITS checks."""

import collections
import io
import json
import re
import tarfile
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class ScriptedFiles:
    """
    A loopback file server with Range support and a script of faults for the next GETs.

    A fault is "reset" (close without answering), "cut" (Content-Length of the whole, half the
    body, close), "corrupt" (one byte changed), "ignore-range" (HTTP 200 and the whole file to a
    Range request), "bad-range" (a 206 that starts at byte 0), or an HTTP code with optional
    headers: (503, {}), (429, {"Retry-After": "3"}).
    """

    def __init__(self, root):
        self.root = root
        self.faults = deque()
        self.gets = []  # (path, Range header or None) of every GET
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.handle_error = lambda request, address: None
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def _handler(self):
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, head):
                path = files.root / self.path.lstrip("/")
                if not head:
                    files.gets.append((self.path, self.headers.get("Range")))
                fault = files.faults.popleft() if files.faults and not head else None
                if fault == "reset":
                    self.close_connection = True
                    return
                if isinstance(fault, tuple):
                    code, headers = fault
                    self.send_response(code)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                size = len(data)
                wanted = self.headers.get("Range")
                match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
                if fault == "bad-range" and match:
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{size - 1}/{size}")
                elif match and fault != "ignore-range":
                    start = int(match.group(1))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                    data = data[start:]
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if head:
                    return
                if fault == "corrupt":
                    data = corrupt(data)
                if fault == "cut":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def do_GET(self):
                self._send(head=False)

            def do_HEAD(self):
                self._send(head=True)

        return Handler


@pytest.fixture
def files(tmp_path):
    """A ScriptedFiles server serving tmp_path/"served"."""
    root = tmp_path / "served"
    (root / DIR).mkdir(parents=True)
    server = ScriptedFiles(root)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def server(files):
    """(root folder, base URL) of the file server."""
    return files.root, files.url


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
    kwargs.setdefault("sleep", lambda seconds: None)
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


# -- retries ----------------------------------------------------------------------------------


def url_of(base, name):
    return f"{base}{DIR}/{name}"


def one_file(files, name=NAMES[0], data=None):
    (files.root / DIR / name).write_bytes(data if data is not None else fits_bytes())
    return status_body([name]), [url_of(files.url, name)]


@pytest.mark.parametrize(
    "faults",
    [
        [(503, {})],
        [(500, {})],
        [(429, {})],
        # aiohttp itself tries a request again once when a kept-alive connection drops.
        ["reset", "reset"],
        ["cut"],
    ],
)
def test_a_transient_download_failure_is_retried_after_a_backoff(files, out, faults):
    body, urls = one_file(files)
    files.faults.extend(faults)
    sleeps, stats = [], collections.Counter()
    results = fetch(body, urls, out, sleep=sleeps.append, stats=stats)
    assert results.errors == [], error_text(results)
    assert list(results) == [str(out / NAMES[0])]
    assert verify_fits(out / NAMES[0]) is None
    assert stats["retries"] == 1
    assert len(sleeps) == 1
    assert sleeps[0] > 0


def test_retry_after_of_a_429_download_is_honoured(files, out):
    body, urls = one_file(files)
    files.faults.append((429, {"Retry-After": "7"}))
    sleeps = []
    assert list(fetch(body, urls, out, sleep=sleeps.append)) == [str(out / NAMES[0])]
    assert sleeps[0] >= 7


def test_a_download_that_keeps_failing_is_reported_after_its_retries(files, out):
    body, urls = one_file(files)
    files.faults.extend([(503, {})] * 10)
    results = fetch(body, urls, out, retries=2)
    assert list(results) == []
    assert "after 3 tries: HTTP 503" in error_text(results)
    assert len(files.gets) == 3


def test_a_404_download_is_not_retried(files, out):
    results = fetch(status_body(NAMES[:1]), [url_of(files.url, NAMES[0])], out)
    assert "HTTP 404" in error_text(results)
    assert len(files.gets) == 1


def test_a_file_corrupted_in_transit_is_downloaded_again(files, out):
    body, urls = one_file(files)
    files.faults.append("corrupt")
    stats = collections.Counter()
    results = fetch(body, urls, out, stats=stats)
    assert results.errors == [], error_text(results)
    assert verify_fits(out / NAMES[0]) is None
    assert stats["redownloads"] == 1


def test_a_tar_corrupted_in_transit_is_downloaded_again_and_each_file_published_once(files, out):
    write_tar(files.root, jsoc_tar_members({name: fits_bytes(i) for i, name in enumerate(NAMES)}))
    files.faults.append("corrupt")
    published = []
    results = fetch(
        status_body(tar=True),
        [f"{files.url}{DIR}/{RID}.tar"],
        out,
        on_file=lambda name, path: published.append(name),
    )
    assert results.errors == [], error_text(results)
    assert sorted(results) == sorted(str(out / name) for name in NAMES)
    assert sorted(published) == sorted(NAMES)
    assert files_under(out) == sorted(NAMES)


# -- resume -----------------------------------------------------------------------------------


def leave_partial(out, name, data):
    """What an interrupted run leaves: the first bytes of a download in the partial folder."""
    folder = out / PARTIAL_DIR / RID
    folder.mkdir(parents=True)
    (folder / name).write_bytes(data)


def test_a_partial_file_of_an_interrupted_run_is_continued_with_range(files, out):
    data = fits_bytes()
    body, urls = one_file(files, data=data)
    leave_partial(out, NAMES[0], data[:3000])
    stats = collections.Counter()
    results = fetch(body, urls, out, stats=stats)
    assert results.errors == [], error_text(results)
    assert files.gets == [(f"/{DIR}/{NAMES[0]}", "bytes=3000-")]
    assert (out / NAMES[0]).read_bytes() == data
    assert stats["resumed"] == 1
    assert files_under(out) == [NAMES[0]]


def test_a_server_answering_200_to_range_gets_a_download_from_zero(files, out):
    data = fits_bytes()
    body, urls = one_file(files, data=data)
    leave_partial(out, NAMES[0], b"X" * 3000)  # would be spliced in if the 200 were appended
    files.faults.append("ignore-range")
    stats = collections.Counter()
    results = fetch(body, urls, out, stats=stats)
    assert results.errors == [], error_text(results)
    assert (out / NAMES[0]).read_bytes() == data
    assert stats["restarted"] == 1
    assert files.gets[-1][1] in (None, "bytes=0-")  # parfive asks for the whole file


def test_a_206_that_starts_elsewhere_is_not_spliced(files, out):
    data = fits_bytes()
    body, urls = one_file(files, data=data)
    leave_partial(out, NAMES[0], b"X" * 3000)
    files.faults.append("bad-range")
    results = fetch(body, urls, out)
    assert results.errors == [], error_text(results)
    assert (out / NAMES[0]).read_bytes() == data


def test_a_complete_partial_file_is_published_without_downloading_it_again(files, out):
    data = fits_bytes()
    body, urls = one_file(files, data=data)
    leave_partial(out, NAMES[0], data)
    results = fetch(body, urls, out)
    assert list(results) == [str(out / NAMES[0])]
    assert files.gets == [(f"/{DIR}/{NAMES[0]}", f"bytes={len(data)}-")]  # answered 416


def test_a_resumed_file_that_fails_verification_is_downloaded_from_zero(files, out):
    data = fits_bytes()
    body, urls = one_file(files, data=data)
    leave_partial(out, NAMES[0], b"X" * 3000)  # garbage from a changed file
    results = fetch(body, urls, out)
    assert results.errors == [], error_text(results)
    assert (out / NAMES[0]).read_bytes() == data
    assert files.gets[0][1] == "bytes=3000-"
    assert files.gets[-1][1] in (None, "bytes=0-")


def test_a_partial_tar_is_continued_with_range(files, out):
    path = write_tar(files.root, jsoc_tar_members({name: fits_bytes(i) for i, name in enumerate(NAMES)}))
    leave_partial(out, f"{RID}.tar", path.read_bytes()[:5000])
    results = fetch(status_body(tar=True), [f"{files.url}{DIR}/{RID}.tar"], out)
    assert results.errors == [], error_text(results)
    assert sorted(results) == sorted(str(out / name) for name in NAMES)
    assert files.gets == [(f"/{DIR}/{RID}.tar", "bytes=5000-")]


# -- hooks ------------------------------------------------------------------------------------


def test_on_file_is_told_of_every_published_and_every_kept_file(files, out):
    for i, name in enumerate(NAMES):
        (files.root / DIR / name).write_bytes(fits_bytes(i))
    out.mkdir()
    (out / NAMES[0]).write_bytes(fits_bytes())
    seen = []
    fetch(
        status_body(),
        [url_of(files.url, name) for name in NAMES],
        out,
        on_file=lambda name, path: seen.append((name, path)),
    )
    assert sorted(seen) == sorted((name, out / name) for name in NAMES)
