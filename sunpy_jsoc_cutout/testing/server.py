"""
The HTTP side of the offline JSOC: a WSGI app with JSOC's CGI programs and a loopback server.

`OfflineJSOC` serves ``cgi-bin/ajax/jsoc_info``, ``cgi-bin/ajax/jsoc_fetch`` and
``cgi-bin/ajax/checkAddress.sh`` (GET query strings and POST form bodies alike) and the exported
files under ``/SUMn/...``, from a threaded standard-library HTTP server bound to a loopback address,
in a background thread::

    with OfflineJSOC(staging_seconds=0.5) as jsoc:
        requests.get(jsoc.url + "cgi-bin/ajax/jsoc_info", params={"op": "series_struct", "ds": "hmi.M_45s"})
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import json
import logging
import re
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qsl, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from sunpy_jsoc_cutout.testing.exports import REGISTERED_EMAILS, ExportManager, Faults, check_address

__all__ = ["Faults", "OfflineJSOC", "OfflineJSOCApp", "parse_params"]

log = logging.getLogger(__name__)

_CGI = "/cgi-bin/ajax/"
_CHUNK = 64 * 1024
_CONTENT_TYPES = {
    ".fits": "application/octet-stream",
    ".tar": "application/x-tar",
    ".json": "application/json",
    ".txt": "text/plain",
    ".html": "text/html",
}
_MANAGER_KNOBS = {
    "ignore_process",
    "retention_seconds",
    "pending_timeout",
    "duplicate_window",
    "max_records",
    "clock",
}
_SOCKET_KEY = "offline_jsoc.socket"


class _Reset(ConnectionResetError):
    """Raised inside the app to drop the connection without (the rest of) an answer."""


def _reset(environ: dict) -> None:
    # SO_LINGER 0: closing sends a TCP reset, as a crashed or overloaded front end does.
    sock = environ.get(_SOCKET_KEY)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raise _Reset("offline JSOC: connection reset (injected fault)")


def _cut_body(data: bytes, keep: int) -> Iterable[bytes]:
    # wsgiref's handler takes a ConnectionResetError as "the client went away" and closes the
    # connection quietly, after the part already written.
    yield data[: max(1, keep)]
    raise _Reset("offline JSOC: body cut (injected fault)")


def parse_params(environ: dict) -> dict[str, str]:
    """
    The CGI parameters of a request: the query string, then a form-encoded POST body.

    drms puts the process string in the query key ``process=n`` (it URL-encodes
    ``process=n=0|...`` as a key), which JSOC's CGI wrapper turns back into ``process=n=0|...``;
    that spelling is accepted here too.
    """
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if environ.get("REQUEST_METHOD", "GET").upper() == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        pairs += parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("process=") and "process" not in params:
            # "process%3Dn=0|im_patch,..." -> key "process=n", value "0|im_patch,..."
            params["process"] = key[len("process=") :] + "=" + value
        else:
            params[key] = value
    return params


def _encode(body: dict | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _json(start_response, body: dict | bytes, status: str = "200 OK") -> list[bytes]:
    data = _encode(body)
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _plain(start_response, status: str, text: str) -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def _limit(records: list, n: str | None) -> list:
    # jsoc_info's n: +N the first N records, -N the last N.
    try:
        count = int(n) if n not in (None, "") else 0
    except ValueError:
        return records
    if count > 0:
        return records[:count]
    if count < 0:
        return records[count:]
    return records


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class OfflineJSOCApp:
    """
    The WSGI application of the offline JSOC.

    Parameters
    ----------
    manager : `~sunpy_jsoc_cutout.testing.exports.ExportManager`
        The export state.
    registered_emails : sequence of str
        Addresses that ``checkAddress.sh`` reports as registered.
    """

    def __init__(self, manager: ExportManager, registered_emails: Sequence[str] = REGISTERED_EMAILS):
        self.manager = manager
        self.faults: Faults = manager.faults
        self.registered_emails = tuple(registered_emails)
        self.calls: collections.Counter = collections.Counter()
        self._calls_lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._calls_lock:
            self.calls[name] += 1

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            if path.startswith(_CGI):
                if method not in ("GET", "POST"):
                    return _plain(start_response, "405 Method Not Allowed", "Method not allowed\n")
                program = path[len(_CGI) :]
                params = parse_params(environ)
                op = "checkAddress" if program == "checkAddress.sh" else params.get("op") or program
                fault = self.faults.draw("cgi", op)
                if fault is not None and fault != "cgi_cut":
                    return self._fault(environ, start_response, fault)
                if program == "jsoc_info":
                    answer = self.jsoc_info(params)
                elif program == "jsoc_fetch":
                    answer = self.jsoc_fetch(params)
                elif program == "checkAddress.sh":
                    self._count("checkAddress")
                    address = params.get("address")
                    if address is not None and "%" in address:
                        # drms URL-encodes the address twice; checkAddress.py unquotes it.
                        address = unquote(address)
                    answer = check_address(address, self.registered_emails)
                else:
                    return _plain(start_response, "404 Not Found", f"Not Found: {path}\n")
                if fault == "cgi_cut":
                    # The program ran (an export request was taken); its answer is lost mid-way.
                    data = _encode(answer)
                    start_response(
                        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
                    )
                    return _cut_body(data, len(data) // 2)
                return _json(start_response, answer)
            elif method in ("GET", "HEAD"):
                file_path = self.manager.file_for(path)
                if file_path is not None and file_path.is_file():
                    return self._serve_file(environ, start_response, file_path, head=method == "HEAD")
            return _plain(start_response, "404 Not Found", f"Not Found: {path}\n")
        except _Reset:
            raise
        except Exception:  # a bug in the fake surfaces as a 500, as a crashing CGI would
            log.exception("offline JSOC: error answering %s", path)
            return _plain(start_response, "500 Internal Server Error", traceback.format_exc())

    def _fault(self, environ: dict, start_response, fault: str) -> Iterable[bytes]:
        """Answer with an injected fault that replaces the answer (500, 429 or a reset)."""
        if fault.endswith("_reset"):
            _reset(environ)
        if fault.endswith("_429"):
            data = b"Too Many Requests (injected fault)\n"
            start_response(
                "429 Too Many Requests",
                [
                    ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(data))),
                    ("Retry-After", str(self.faults.retry_after)),
                ],
            )
            return [data]
        return _plain(start_response, "500 Internal Server Error", "Internal Server Error (injected fault)\n")

    # -- CGI programs ------------------------------------------------------------------------------

    def jsoc_info(self, params: dict[str, str]) -> dict:
        """Answer ``jsoc_info`` (``series_struct``, ``rs_summary``, ``rs_list``)."""
        from sunpy_jsoc_cutout.testing import catalog

        op = params.get("op", "")
        self._count(op or "jsoc_info")
        ds = params.get("ds", "").strip()
        if op == "series_struct":
            name = re.split(r"[\[{]", ds, maxsplit=1)[0].strip()
            try:
                series = catalog.get_series(name)
            except catalog.UnknownSeries:
                return {"status": 1, "error": "series not found"}
            return catalog.series_struct(series)
        if op in ("rs_summary", "rs_list"):
            try:
                records, _ = catalog.query(ds)
            except catalog.UnknownSeries:
                return {"status": 1, "error": " jsoc_info: series not found."}
            except catalog.RecordSetError as exc:
                return {"status": 1, "error": str(exc) or "unable to open records"}
            if op == "rs_summary":
                return catalog.rs_summary_body(records)
            records = _limit(list(records), params.get("n"))
            return catalog.rs_list_body(records, _split(params.get("key")), _split(params.get("seg")))
        return {"status": 1, "error": f"jsoc_info: unknown op '{op}'"}

    def jsoc_fetch(self, params: dict[str, str]) -> dict | bytes:
        """Answer ``jsoc_fetch`` (``exp_request``, ``exp_status``)."""
        op = params.get("op", "")
        self._count(op or "jsoc_fetch")
        if op == "exp_request":
            return self.manager.request(params)
        if op == "exp_status":
            return self.manager.status(params.get("requestid"))
        if op == "exp_repeat":
            return {"status": 4, "error": "Re-Export requests temporarily disabled."}
        return {"status": 4, "error": f"jsoc_fetch: unsupported op '{op}'"}

    # -- files -------------------------------------------------------------------------------------

    def _serve_file(self, environ: dict, start_response, path: Path, *, head: bool) -> Iterable[bytes]:
        fault = None
        if not head:
            fault = self.faults.draw("download")
            if fault in ("download_500", "download_reset", "download_429"):
                return self._fault(environ, start_response, fault)
            self._count("download")
        size = path.stat().st_size
        headers = [
            ("Content-Type", _CONTENT_TYPES.get(path.suffix, "application/octet-stream")),
            ("Accept-Ranges", "none" if self.faults.ignore_range else "bytes"),
        ]
        start, end = 0, size - 1
        status = "200 OK"
        wanted = "" if self.faults.ignore_range else environ.get("HTTP_RANGE", "")
        match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", wanted) if wanted else None
        if match and (match.group(1) or match.group(2)):
            first, last = match.groups()
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            else:
                start, end = max(0, size - int(last)), size - 1
            if start >= size or start > end:
                start_response(
                    "416 Range Not Satisfiable",
                    [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")],
                )
                return []
            status = "206 Partial Content"
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        length = end - start + 1 if size else 0
        if fault == "download_truncate" and status != "200 OK":
            fault = "download_cut"  # a short 206 would only be a smaller range
        send = length
        if fault == "download_truncate":
            length = send = int(length * self.faults.fraction(0.2, 0.9))
        elif fault == "download_cut":
            send = int(length * self.faults.fraction(0.1, 0.9))
        corrupt_at = int(length * self.faults.fraction(0.5, 1.0)) if fault == "download_corrupt" else None
        headers.append(("Content-Length", str(length)))
        start_response(status, headers)
        if head or length == 0:
            return []
        return _read_range(
            path,
            start,
            send,
            cut=send < length,
            corrupt_at=corrupt_at,
            delay=float(self.faults.chunk_delay or 0.0),
        )


def _read_range(
    path: Path,
    start: int,
    length: int,
    *,
    cut: bool = False,
    corrupt_at: int | None = None,
    delay: float = 0.0,
) -> Iterable[bytes]:
    sent = 0
    with path.open("rb") as fh:
        fh.seek(start)
        while length > 0:
            if delay and sent:
                time.sleep(delay)
            chunk = fh.read(min(_CHUNK, length))
            if not chunk:
                return
            if corrupt_at is not None and sent <= corrupt_at < sent + len(chunk):
                flipped = bytearray(chunk)
                flipped[corrupt_at - sent] ^= 0x5A
                chunk = bytes(flipped)
            length -= len(chunk)
            sent += len(chunk)
            yield chunk
    if cut:
        raise _Reset("offline JSOC: download cut (injected fault)")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        log.debug("offline JSOC: %s - %s", self.address_string(), format % args)

    def get_environ(self):
        environ = super().get_environ()
        environ[_SOCKET_KEY] = self.connection  # for injected connection resets
        return environ


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _check_loopback(host: str) -> None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve host {host!r} for the offline JSOC: {exc}") from exc
    for info in infos:
        if not ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback:
            raise ValueError(
                f"the offline JSOC binds to loopback addresses only; {host!r} is not one "
                "(use 127.0.0.1, ::1 or localhost)"
            )


class OfflineJSOC:
    """
    A JSOC stand-in over real HTTP on a loopback address.

    Parameters
    ----------
    host : str
        A loopback address or name (others are refused).
    port : int
        The port; 0 picks a free one.
    staging_seconds : float
        Time an export takes from ``exp_request`` to status 0 (status 2, then 1).
    registered_emails : sequence of str
        Addresses accepted as ``notify`` and reported registered by ``checkAddress.sh``.
    file_root : pathlib.Path, optional
        Folder for the export files; a temporary folder (removed by `stop`) by default.
    faults : `~sunpy_jsoc_cutout.testing.exports.Faults` or dict, optional
        Fault injection (HTTP 500s, resets, cut bodies, 429s on CGI calls and downloads,
        truncated and corrupted files, status 6 after a submission, malicious tars); a dict is
        passed to ``Faults(**faults)``. None by default; change it while running through
        ``jsoc.faults``.
    **knobs
        Passed to `~sunpy_jsoc_cutout.testing.exports.ExportManager`: ``ignore_process`` (export
        full-disk images whatever the process string), ``retention_seconds``, ``pending_timeout``,
        ``duplicate_window``, ``max_records``, ``clock``.

    Attributes
    ----------
    url : str
        ``"http://127.0.0.1:PORT/"`` once started.
    calls : collections.Counter
        Requests per CGI op (``"exp_request"``, ``"exp_status"``, ``"rs_list"``, ``"series_struct"``,
        ``"rs_summary"``, ``"checkAddress"``) and ``"download"`` for file GETs.
    exports : dict
        `~sunpy_jsoc_cutout.testing.exports.Export` by request ID.
    exp_requests : list of dict
        The parameters of every ``exp_request`` received, in order.
    faults : `~sunpy_jsoc_cutout.testing.exports.Faults`
        The fault knobs, settable while running; ``faults.injected`` counts what was injected.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        staging_seconds: float = 1.0,
        registered_emails: Sequence[str] = REGISTERED_EMAILS,
        file_root: Path | None = None,
        faults: Faults | Mapping | None = None,
        **knobs,
    ):
        unknown = set(knobs) - _MANAGER_KNOBS
        if unknown:
            raise TypeError(f"unknown OfflineJSOC knob(s): {', '.join(sorted(unknown))}")
        _check_loopback(host)
        self.host = host
        self.port = port
        self._own_root = file_root is None
        self.file_root = (
            Path(file_root) if file_root is not None else Path(tempfile.mkdtemp(prefix="offline-jsoc-"))
        )
        if isinstance(faults, Mapping):
            faults = Faults(**faults)
        self.manager = ExportManager(
            self.file_root,
            staging_seconds=staging_seconds,
            registered_emails=registered_emails,
            faults=faults,
            **knobs,
        )
        self.app = OfflineJSOCApp(self.manager, registered_emails)
        self.url: str | None = None
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- state shortcuts ---------------------------------------------------------------------------

    @property
    def calls(self) -> collections.Counter:
        return self.app.calls

    @property
    def exports(self) -> dict:
        return self.manager.exports

    @property
    def exp_requests(self) -> list[dict]:
        return self.manager.requests

    @property
    def staging_seconds(self) -> float:
        return self.manager.staging_seconds

    @staging_seconds.setter
    def staging_seconds(self, value: float) -> None:
        self.manager.staging_seconds = float(value)

    @property
    def ignore_process(self) -> bool:
        return self.manager.ignore_process

    @ignore_process.setter
    def ignore_process(self, value: bool) -> None:
        self.manager.ignore_process = bool(value)

    @property
    def faults(self) -> Faults:
        return self.manager.faults

    @property
    def retention_seconds(self) -> float:
        return self.manager.retention_seconds

    @retention_seconds.setter
    def retention_seconds(self, value: float) -> None:
        self.manager.retention_seconds = float(value)

    def expire(self, requestid: str) -> None:
        """Move an export to status 5 (deleted after the retention time) and remove its files."""
        self.manager.expire(requestid)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> OfflineJSOC:
        """Bind, and serve in a background thread. Returns self."""
        if self._server is not None:
            return self
        self.file_root.mkdir(parents=True, exist_ok=True)
        server_cls = _ThreadingWSGIServer6 if ":" in self.host else _ThreadingWSGIServer
        server = server_cls((self.host, self.port), _QuietHandler)
        server.set_app(self.app)
        self.port = server.server_address[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}/"
        self._server = server
        self.manager.start()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="offline-jsoc-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop the staging worker and remove a temporary file root."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.manager.stop()
        if self._own_root:
            shutil.rmtree(self.file_root, ignore_errors=True)

    def __enter__(self) -> OfflineJSOC:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<OfflineJSOC {self.url or 'not started'} exports={len(self.exports)}>"
