"""
The export side of the offline JSOC: ``jsoc_fetch``'s rules and the export manager.

`ExportManager` holds every export made on one offline server. It answers ``exp_request`` and
``exp_status`` with the JSON bodies that JSOC's ``jsoc_fetch`` prints (status codes, texts and
number types as in the 2022 sources, see ``jsoc-api.md`` section 3), and stages accepted exports in
a worker thread: the records are processed with `~sunpy_jsoc_cutout.testing.impatch.run`, written as
FITS files named by ``filenamefmt`` into a ``/SUMn/Dnnn/S00000`` folder, and described by
``index.txt``, ``index.json`` and ``index.html`` as ``jsoc_export_make_index`` writes them; url-tar
exports are packed into ``<REQID>.tar`` like ``jsoc_export_manage``'s drmsrun script does.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import random
import re
import shutil
import sys
import tarfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "DUPLICATE_WINDOW",
    "MAX_COMPRESSING_EXPORT_MB",
    "MAX_STRAIGHT_EXPORT_MB",
    "MAX_UNCOMPRESSING_EXPORT_MB",
    "PENDING_TIMEOUT",
    "REGISTERED_EMAILS",
    "RETENTION",
    "SEGMENT_BYTES",
    "Export",
    "ExportManager",
    "Faults",
    "check_address",
    "expand_filenamefmt",
    "is_registered",
]

log = logging.getLogger(__name__)

#: Addresses the offline JSOC treats as registered for exports.
REGISTERED_EMAILS = ("me@example.org", "jsoc@sunpy.org", "test@example.org")

#: Size limits of jsoc_fetch, in MB (``MAX_*_EXPORT_SIZE``). The offline data count as stored
#: compressed (as AIA and HMI level-1 are), so the 10 GB limit applies when ``protocol``
#: contains ``**NONE**`` and the 100 GB one otherwise.
MAX_STRAIGHT_EXPORT_MB = 100000
MAX_UNCOMPRESSING_EXPORT_MB = 10000
MAX_COMPRESSING_EXPORT_MB = 1000000

#: Stored size of one full-frame segment file, in bytes, used for the size estimate as jsoc_fetch
#: sums the stored files. HMI: 64080 MB for 4241 hmi.M_45s records (recorded exp_request, JSOC
#: 2014, jsoc-api.md 6a) is 15.1 MB per magnetogram. AIA: 18105 aia.lev1_euv_12s 131 images were
#: about 144 GB (drms issue #57), 8 MB per Rice-compressed image; spikes files are small.
SEGMENT_BYTES = {
    ("AIA", "image"): 8_000_000,
    ("AIA", "spikes"): 400_000,
    ("HMI", "magnetogram"): 15_100_000,
    ("HMI", "continuum"): 15_100_000,
}
DEFAULT_SEGMENT_BYTES = 15_100_000
_MB = 1024 * 1024

#: jsoc_fetch's ``DUP_EXPORT_WINDOW`` (24 h), the pending-request time-out of the configuration
#: templates (60 min) and the 7-day retention of export results, in seconds.
DUPLICATE_WINDOW = 24 * 3600.0
PENDING_TIMEOUT = 60 * 60.0
RETENTION = 7 * 24 * 3600.0

#: jsoc_fetch's estimated completion time is always the request time plus 10 s.
_EST_SECONDS = 10.0
_WAIT_FAILED = 999999
_CONTACT = "jsoc_help@jsoc.stanford.edu"
_REQUESTID_RE = re.compile(r"JSOC_[0-9]{8}_[0-9]+(_IN)?")
_EMAIL_RE = re.compile(r"\s*[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,6}")
_PACKLIST_VERSION = "0.5"
_NO_FILES_WARNING = "No FITS files were exported. The requested FITS files no longer exist."
_PENDING_STATUSES = (1, 2)


def is_registered(address: str | None, registered: Sequence[str] = REGISTERED_EMAILS) -> bool:
    """Whether ``address`` is a registered export address (case-insensitive)."""
    if not address:
        return False
    return address.strip().lower() in {a.lower() for a in registered}


def check_address(address: str | None, registered: Sequence[str] = REGISTERED_EMAILS) -> dict:
    """
    The reply of ``checkAddress.sh?address=..&checkonly=1``.

    Parameters
    ----------
    address : str or None
        The address as received (already URL-decoded).
    registered : sequence of str
        The registered addresses.

    Returns
    -------
    dict
        ``{"status": 2, "msg": ..., "user_id": ...}`` for registered addresses, status 4 for
        unknown ones and -2 for a missing or malformed address, as ``checkAddress.py``.
    """
    if address is None:
        return {"status": -2, "msg": "Missing required argument 'address'.", "user_id": None}
    if _EMAIL_RE.match(address) is None:
        return {"status": -2, "msg": "Not a valid email address.", "user_id": None}
    if is_registered(address, registered):
        user_id = 1 + [a.lower() for a in registered].index(address.strip().lower())
        return {"status": 2, "msg": "Email address is valid and registered.", "user_id": user_id}
    return {"status": 4, "msg": "email address has been neither validated nor registered", "user_id": None}


# ------------------------------------------------------------------------------------------------
# fault injection

#: The faults a CGI call can be given, and those a file download can be given.
CGI_FAULTS = ("cgi_500", "cgi_reset", "cgi_cut", "cgi_429")
DOWNLOAD_FAULTS = (
    "download_500",
    "download_reset",
    "download_cut",
    "download_truncate",
    "download_corrupt",
    "download_429",
)


class Faults:
    """
    The fault injection of one offline JSOC. Every attribute may be changed while it runs.

    Rates are probabilities per request. One draw decides the fault of a request, so the
    rates of one group add up: ``cgi_500=0.1, cgi_reset=0.1`` gives 20 % of CGI calls a fault.

    Parameters
    ----------
    seed : int, optional
        Seed of the random draws (and of where files are cut or corrupted).
    cgi_500, cgi_reset, cgi_429 : float
        Rates of CGI calls answered with HTTP 500, with a connection closed without an answer
        (a reset), or with HTTP 429 and ``Retry-After``; the CGI program is not run.
    cgi_cut : float
        Rate of CGI calls whose program runs (an ``exp_request`` is taken) but whose answer is
        cut mid-way: ``Content-Length`` larger than what is sent, then the connection closes.
    download_500, download_reset, download_429 : float
        The same for file downloads (GET; HEAD is never faulted).
    download_cut : float
        Rate of downloads cut mid-way (``Content-Length`` of the whole, then a close).
    download_truncate : float
        Rate of downloads that send a truncated file as if it were whole (a ``Content-Length``
        that matches the short body). Ranged requests get a cut instead.
    download_corrupt : float
        Rate of downloads with one byte of the second half of the body changed.
    retry_after : int
        The ``Retry-After`` seconds sent with a 429.
    status6_polls : int
        The first this many ``exp_status`` calls for each new export are answered with status 6
        ("not found, try again"), as JSOC does right after a submission.
    malicious_tar : bool
        url-tar exports staged while this is set also hold a path-traversal member, an
        absolute path, a symlink and a device file.
    cgi_ops : collection of str, optional
        Only these CGI ops (``"exp_request"``, ``"exp_status"``, ``"rs_list"``,
        ``"checkAddress"`` ...) get CGI faults; all by default.
    chunk_delay : float
        Seconds to sleep between the 64 KiB chunks of a download (a slow link, so that a test
        can interrupt a download half-way).
    ignore_range : bool
        Answer ``Range`` requests with the whole file (HTTP 200), as servers that cannot resume.
    max_faults : int, optional
        Stop injecting drawn faults (CGI and download) once this many have been injected
        ("the next two calls fail"); no limit by default.

    Attributes
    ----------
    injected : collections.Counter
        How many faults of each kind were injected (``"cgi_500"``, ``"download_corrupt"``,
        ``"status6"``, ``"malicious_tar"`` ...).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        cgi_500: float = 0.0,
        cgi_reset: float = 0.0,
        cgi_cut: float = 0.0,
        cgi_429: float = 0.0,
        download_500: float = 0.0,
        download_reset: float = 0.0,
        download_cut: float = 0.0,
        download_truncate: float = 0.0,
        download_corrupt: float = 0.0,
        download_429: float = 0.0,
        retry_after: int = 1,
        status6_polls: int = 0,
        malicious_tar: bool = False,
        cgi_ops: Sequence[str] | None = None,
        chunk_delay: float = 0.0,
        ignore_range: bool = False,
        max_faults: int | None = None,
    ):
        self.cgi_500 = cgi_500
        self.cgi_reset = cgi_reset
        self.cgi_cut = cgi_cut
        self.cgi_429 = cgi_429
        self.download_500 = download_500
        self.download_reset = download_reset
        self.download_cut = download_cut
        self.download_truncate = download_truncate
        self.download_corrupt = download_corrupt
        self.download_429 = download_429
        self.retry_after = retry_after
        self.status6_polls = status6_polls
        self.malicious_tar = malicious_tar
        self.cgi_ops = cgi_ops
        self.chunk_delay = chunk_delay
        self.ignore_range = ignore_range
        self.max_faults = max_faults
        self._drawn = 0
        self.injected: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self.seed(seed)

    def __repr__(self) -> str:
        rates = {k: getattr(self, k) for k in CGI_FAULTS + DOWNLOAD_FAULTS if getattr(self, k)}
        return f"<Faults {rates} injected={dict(self.injected)}>"

    def seed(self, seed: int | None) -> None:
        """Restart the random draws from ``seed``."""
        # One stream per group, so that the download faults do not shift when a client makes
        # one CGI call more or less.
        self._lock = getattr(self, "_lock", None) or threading.Lock()
        with self._lock:
            self._rngs = {
                group: random.Random(None if seed is None else f"{seed}-{group}")
                for group in ("cgi", "download", "where")
            }

    def set(self, **knobs) -> Faults:
        """Change several knobs at once (``faults.set(cgi_500=0.1, download_cut=0.05)``); returns self."""
        for name, value in knobs.items():
            if name.startswith("_") or name == "injected" or not hasattr(self, name):
                raise TypeError(f"unknown fault knob {name!r}")
            setattr(self, name, value)
        return self

    def clear(self) -> None:
        """Turn every fault off (the counts are kept)."""
        for name in CGI_FAULTS + DOWNLOAD_FAULTS:
            setattr(self, name, 0.0)
        self.status6_polls = 0
        self.malicious_tar = False
        self.chunk_delay = 0.0
        self.ignore_range = False
        self.max_faults = None

    @property
    def total(self) -> int:
        """The number of faults injected so far."""
        return sum(self.injected.values())

    def count(self, kind: str) -> None:
        """Record one injected fault of ``kind``."""
        with self._lock:
            self.injected[kind] += 1

    def draw(self, group: str, op: str | None = None) -> str | None:
        """
        Decide the fault of one request: a kind from `CGI_FAULTS` (group ``"cgi"``) or
        `DOWNLOAD_FAULTS` (group ``"download"``), counted, or None.
        """
        kinds = CGI_FAULTS if group == "cgi" else DOWNLOAD_FAULTS
        if group == "cgi" and self.cgi_ops is not None and op not in self.cgi_ops:
            return None
        rates = [(kind, float(getattr(self, kind) or 0.0)) for kind in kinds]
        if not any(rate > 0 for _, rate in rates):
            return None
        with self._lock:
            if self.max_faults is not None and self._drawn >= self.max_faults:
                return None
            roll = self._rngs[group].random()
            for kind, rate in rates:
                if roll < rate:
                    self.injected[kind] += 1
                    self._drawn += 1
                    return kind
                roll -= rate
        return None

    def fraction(self, low: float = 0.0, high: float = 1.0) -> float:
        """A seeded random number in [low, high) (where to cut or corrupt a body)."""
        with self._lock:
            return self._rngs["where"].uniform(low, high)


# ------------------------------------------------------------------------------------------------
# filenamefmt


def _is_time_keyword(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(("T_", "DATE")) or upper in {"T_REC", "T_OBS"}


def _time_layout(value: str, layout: str) -> str:
    # exputl_mk_expfilename: "A" drops '.' and ':'; "D" puts '@' around the date fields.
    mod = layout[:1] if layout[:1].isalpha() else ""
    if mod == "A":
        return "".join(c for c in value if c not in ".:")
    if mod == "D":
        out = ["@"]
        for c in value:
            if c == ":":
                continue
            out.append("@" if (c == "." or len(out) == 11) else c)
        return "".join(out)
    return value


def _printf(layout: str, value: str) -> str:
    try:
        if re.search(r"[diouxX]$", layout):
            return layout % int(float(value))
        if re.search(r"[eEfgG]$", layout):
            return layout % float(value)
        return layout % value
    except (TypeError, ValueError):
        return value


def expand_filenamefmt(
    fmt: str | None,
    *,
    seriesname: str,
    recnum: int,
    segment: str,
    keyword: Callable[[str], str | None],
    count: int = 0,
) -> str:
    """
    Build an exported file name from a ``filenamefmt`` as JSOC's ``exputl_mk_expfilename`` does.

    Parameters
    ----------
    fmt : str or None
        The format, e.g. ``"aia.lev1_euv_12s.{T_REC:A}.{WAVELNTH}.{segment}"``; None gives the
        server default ``{seriesname}.{recnum:%d}.{segment}``.
    seriesname : str
        The value of ``{seriesname}`` (the exported record's series).
    recnum : int
        The value of ``{recnum}``.
    segment : str
        The segment's file name (``"image.fits"``), the value of ``{segment}``.
    keyword : callable
        Returns the printed value of a keyword, or None when the record has no such keyword
        (JSOC then writes ``ERROR``).
    count : int
        The value of ``{#}`` (a running count, ``%05d``).

    Returns
    -------
    str
        The file name, whitespace removed. Nothing is appended: without ``{segment}`` last the
        name has no ``.fits`` extension, as on JSOC.
    """
    fmt = fmt or "{seriesname}.{recnum:%d}.{segment}"
    out: list[str] = []
    pos = 0
    while pos < len(fmt):
        if fmt[pos] != "{":
            out.append(fmt[pos])
            pos += 1
            continue
        end = fmt.find("}", pos)
        if end < 0:
            # JSOC stops at an unterminated brace (kExpUtlStat_InvalidFmt).
            break
        token = fmt[pos + 1 : end]
        pos = end + 1
        name, _, layout = token.partition(":")
        layout = layout or None
        if not name:
            continue
        if name == "#":
            val = _printf(layout or "%05d", str(count))
        elif name == "seriesname":
            val = seriesname
        elif name == "recnum":
            val = _printf(layout or "%d", str(recnum))
        elif name == "segment":
            val = segment
        else:
            raw = keyword(name)
            if raw is None:
                val = "ERROR"
            elif layout and _is_time_keyword(name):
                val = _time_layout(raw, layout)
            elif layout:
                val = "".join(_printf(layout, raw).split())
            else:
                val = raw
        out.append(val)
    return "".join("".join(out).split())


# ------------------------------------------------------------------------------------------------
# exports


@dataclass
class Export:
    """
    One export request and its state, as a row of ``jsoc.export`` plus its files.

    ``status`` follows JSOC's codes: 2 queued, 1 being processed, 0 done, 4 failed, 5 deleted.
    """

    requestid: str
    ds: str
    process: str
    method: str
    protocol: str
    filenamefmt: str
    notify: str
    requestor: str
    sizeratio: float
    rcount: int
    size: int
    submitted: float
    digest: str
    records: list = field(default_factory=list, repr=False)
    segments: list[str] = field(default_factory=list)
    status: int = 2
    error: str | None = None
    dir: str = ""
    files: list[dict] = field(default_factory=list)
    tarfile: str | None = None
    exptime: str = ""
    finished: float | None = None
    index_json: bytes | None = field(default=None, repr=False)
    not_found_polls: int = 0

    @property
    def est_time(self) -> float:
        """The estimated completion time (request time + 10 s, as jsoc_fetch)."""
        return self.submitted + _EST_SECONDS


def _limit_records(records: list, n: int) -> list:
    if n > 0:
        return records[:n]
    if n < 0:
        return records[n:]
    return records


def _record_limit(process: str) -> int:
    match = re.match(r"\s*n\s*=\s*(-?\d+)", process or "")
    return int(match.group(1)) if match else 0


def _steps_of(process: str) -> str:
    """The process string without its ``n=<N>`` record limit, "" when there is no step."""
    parts = [p for p in (process or "").split("|") if p.strip()]
    if parts and re.match(r"\s*n\s*=", parts[0]):
        parts = parts[1:]
    parts = [p for p in parts if p.strip() != "no_op"]
    return "|".join(parts)


def _segment_bytes(record, segment: str) -> int:
    series = record.series
    per_series = getattr(series, "segment_bytes", None)
    if isinstance(per_series, dict) and segment in per_series:
        return int(per_series[segment])
    return SEGMENT_BYTES.get((series.instrument, segment), DEFAULT_SEGMENT_BYTES)


def _exptime(t: float) -> str:
    # sprint_time(..., "UT", 0)
    return datetime.fromtimestamp(t, UTC).strftime("%Y.%m.%d_%H:%M:%S_UT")


class ExportManager:
    """
    The export state of one offline JSOC.

    Parameters
    ----------
    file_root : pathlib.Path
        Folder holding the ``SUMn`` export folders.
    staging_seconds : float
        Time from an ``exp_request`` until the export reaches status 0. The first half is spent
        queued (status 2), the rest being processed (status 1).
    registered_emails : sequence of str
        Addresses accepted as ``notify``.
    ignore_process : bool
        When True the ``process`` string is not run and full-disk images are exported, as JSOC
        sometimes does with malformed processing arguments.
    retention_seconds, pending_timeout, duplicate_window : float
        JSOC's 7-day retention, 60-minute pending-request time-out and 24-hour duplicate window.
    max_records : int or None
        Refuse record sets larger than this, as jsoc_fetch does for too many records.
    clock : callable
        Returns the current time in seconds since the Unix epoch.
    faults : Faults, optional
        Fault injection (status 6 after a submission, malicious tars); none by default.
    """

    def __init__(
        self,
        file_root: Path,
        *,
        staging_seconds: float = 1.0,
        registered_emails: Sequence[str] = REGISTERED_EMAILS,
        ignore_process: bool = False,
        retention_seconds: float = RETENTION,
        pending_timeout: float = PENDING_TIMEOUT,
        duplicate_window: float = DUPLICATE_WINDOW,
        max_records: int | None = None,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ):
        self.faults = faults if faults is not None else Faults()
        self.file_root = Path(file_root)
        self.staging_seconds = float(staging_seconds)
        self.registered_emails = tuple(registered_emails)
        self.ignore_process = ignore_process
        self.retention_seconds = retention_seconds
        self.pending_timeout = pending_timeout
        self.duplicate_window = duplicate_window
        self.max_records = max_records
        self.clock = clock
        self.exports: dict[str, Export] = {}
        self.requests: list[dict] = []
        self._lock = threading.RLock()
        self._serial: dict[str, int] = {}
        self._dir_serial = 1000000
        self._files: dict[str, Path] = {}
        self._queue: list[str] = []
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._worker: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the staging worker thread."""
        with self._lock:
            if self._worker is not None:
                return
            self._stopping = False
            self._worker = threading.Thread(target=self._work, name="offline-jsoc-exports", daemon=True)
            self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the staging worker; exports not yet picked up stay queued."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(timeout)

    # -- exp_request -------------------------------------------------------------------------------

    def _new_requestid(self, now: float) -> str:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        self._serial[day] = self._serial.get(day, 0) + 1
        return f"JSOC_{day}_{self._serial[day]:03d}"

    def _pending_for(self, notify: str, now: float) -> list[str]:
        return [
            e.requestid
            for e in self.exports.values()
            if e.notify.lower() == notify.lower()
            and e.status in _PENDING_STATUSES
            and now - e.submitted < self.pending_timeout
        ]

    def request(self, params: dict[str, str]) -> dict:
        """
        Answer ``jsoc_fetch?op=exp_request``.

        Parameters
        ----------
        params : dict
            The request parameters (``ds``, ``process``, ``notify``, ``method``, ``protocol``,
            ``filenamefmt``, ``sizeratio``, ``requestor``, ...).

        Returns
        -------
        dict
            The JSON body, in jsoc_fetch's key order.
        """
        from sunpy_jsoc_cutout.testing import catalog

        with self._lock:
            self.requests.append(dict(params))
        ds = params.get("ds", "Not Specified")
        process = params.get("process") or "Not Specified"
        method = params.get("method") or "url"
        protocol = params.get("protocol") or "as-is"
        filenamefmt = params.get("filenamefmt") or "{seriesname}.{recnum:%d}.{segment}"
        notify = (params.get("notify") or "").strip()
        requestor = params.get("requestor") or "Not Specified"
        try:
            sizeratio = float(params.get("sizeratio") or 1.0)
        except ValueError:
            sizeratio = 1.0

        if not is_registered(notify, self.registered_emails):
            return {
                "status": 4,
                "error": "Cannot process your request. Your notification email address "
                "has not been registered.",
            }

        now = self.clock()
        with self._lock:
            pending = self._pending_for(notify, now)
        if pending:
            return {
                "status": 7,
                "error": f"User {notify} has {len(pending)} pending export requests "
                f"({','.join(pending)}); please wait until at least one request "
                "has completed before submitting a new one.",
            }

        try:
            records, segments = catalog.query(ds)
        except catalog.RecordSetError as exc:  # UnknownSeries included: its text is jsoc_fetch's
            return {"status": 4, "error": str(exc) or f"Bad record-set query '{ds}'."}
        records = _limit_records(list(records), _record_limit(process if process != "Not Specified" else ""))
        segments = list(segments)
        rcount = len(records)
        if self.max_records is not None and rcount > self.max_records:
            return {
                "status": 4,
                "error": f"Can not open RecordSet {rcount} is too many records in one request.",
            }

        if rcount:
            spec = records[0].series.name + "[" + ",".join(f"#{r.recnum}" for r in records) + "]"
        else:
            spec = ds.split("[")[0] + "[]"
        spec += "{" + ",".join(segments) + "}"
        digest = hashlib.md5((spec + filenamefmt + process + protocol + method).encode()).hexdigest()

        nbytes = sum(_segment_bytes(r, s) for r in records for s in segments) * sizeratio
        size = 0 if nbytes <= 0 else max(1, int(nbytes // _MB))

        with self._lock:
            for old in sorted(self.exports.values(), key=lambda e: e.submitted, reverse=True):
                if (
                    old.digest == digest
                    and now - old.submitted < self.duplicate_window
                    and old.status in (0, 1, 2)
                ):
                    return {
                        "status": 2,
                        "requestid": old.requestid,
                        "method": method,
                        "protocol": protocol,
                        "wait": max(0, round(old.est_time - now)),
                        "rcount": rcount,
                        "size": old.size,
                    }

        limit = MAX_UNCOMPRESSING_EXPORT_MB if "**NONE**" in protocol else MAX_STRAIGHT_EXPORT_MB
        if size > limit:
            return {
                "requestid": "VOID",
                "method": method,
                "protocol": protocol,
                "wait": 0,
                "status": 3,
                "count": rcount,
                "size": size,
                "error": f"Request exceeds max byte limit of {limit}MB",
            }

        with self._lock:
            export = Export(
                requestid=self._new_requestid(now),
                ds=ds,
                process=process,
                method=method,
                protocol=protocol,
                filenamefmt=filenamefmt,
                notify=notify,
                requestor=requestor,
                sizeratio=sizeratio,
                rcount=rcount,
                size=size,
                submitted=now,
                digest=digest,
                records=records,
                segments=segments,
                not_found_polls=int(self.faults.status6_polls or 0),
            )
            self.exports[export.requestid] = export
            self._queue.append(export.requestid)
            self._wake.notify_all()
        return {
            "status": 2,
            "requestid": export.requestid,
            "method": method,
            "protocol": protocol,
            "wait": round(export.est_time - now),
            "rcount": rcount,
            "size": size,
        }

    # -- exp_status --------------------------------------------------------------------------------

    def status(self, requestid: str | None) -> dict | bytes:
        """
        Answer ``jsoc_fetch?op=exp_status``.

        Returns
        -------
        dict or bytes
            The JSON body; for status 0 the bytes of the export's ``index.json``.
        """
        if not requestid or requestid == "Not Specified":
            return {"status": 4, "error": "RequestID must be provided"}
        if _REQUESTID_RE.search(requestid) is None:
            return {"status": 4, "error": f"Bad RequestID '{requestid}' provided."}
        now = self.clock()
        with self._lock:
            export = self.exports.get(requestid)
            if export is None:
                # jsoc_fetch's JSONDIE2 concatenates instead of formatting, hence the odd text.
                return {"status": 4, "error": f"invalid export DRMS record for ID `%s`{requestid}"}
            if export.not_found_polls > 0:
                # A new request not yet visible to exp_status, as older JSOCs answer.
                export.not_found_polls -= 1
                self.faults.count("status6")
                return {
                    "status": 6,
                    "requestid": export.requestid,
                    "wait": round(export.est_time - now),
                    "error": "RequestID not found. Try again in a few seconds.",
                }
            if (
                export.status == 0
                and export.finished is not None
                and now - export.finished > self.retention_seconds
            ):
                self._expire(export)
            if export.status == 0:
                return export.index_json
            body = {
                "status": export.status,
                "requestid": export.requestid,
                "method": export.method,
                "protocol": export.protocol,
            }
            if export.status in _PENDING_STATUSES:
                body["wait"] = round(export.est_time - now)
            else:
                body["wait"] = _WAIT_FAILED
            # rcount is never set on the exp_status path of jsoc_fetch.
            body["rcount"] = 0
            body["size"] = export.size
            error = {
                3: "Request too large",
                4: export.error or "RecordSet specified does not exist",
                5: "Request was completed but is now deleted, 7 day limit exceeded",
            }.get(export.status)
            if error:
                body["error"] = error
            if export.status > 2:
                body["contact"] = _CONTACT
            return body

    # -- expiry ------------------------------------------------------------------------------------

    def expire(self, requestid: str) -> None:
        """Move an export to status 5 and delete its files, as after the 7-day retention."""
        with self._lock:
            self._expire(self.exports[requestid])

    def _expire(self, export: Export) -> None:
        export.status = 5
        export.index_json = None
        if export.dir:
            for url_path in [p for p in self._files if p.startswith(export.dir + "/")]:
                del self._files[url_path]
            shutil.rmtree(self.file_root / export.dir.lstrip("/"), ignore_errors=True)

    # -- files -------------------------------------------------------------------------------------

    def file_for(self, url_path: str) -> Path | None:
        """The file served at ``url_path`` (``/SUM1/D1000001/S00000/name``), or None."""
        with self._lock:
            return self._files.get(url_path)

    # -- staging -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._queue:
                    self._wake.wait()
                if self._stopping:
                    return
                export = self.exports[self._queue[0]]
                delay = export.submitted + self.staging_seconds / 2 - self.clock()
                if delay > 0:
                    self._wake.wait(min(delay, 0.5))
                    continue
                self._queue.pop(0)
                if export.status != 2:
                    continue
                export.status = 1
            self._stage(export)
            with self._lock:
                while not self._stopping and export.status == 1:
                    delay = export.submitted + self.staging_seconds - self.clock()
                    if delay <= 0:
                        export.status = 0
                        export.finished = self.clock()
                        break
                    self._wake.wait(min(delay, 0.5))

    def _stage(self, export: Export) -> None:
        # Any failure ends the export in status 4, as in JSOC's export manager; im_patch's own
        # errors (ProcessingError) carry the message the user sees.
        try:
            from sunpy_jsoc_cutout.testing import impatch

            self._make_files(export, impatch)
        except Exception as exc:
            module = sys.modules.get("sunpy_jsoc_cutout.testing.impatch")
            processing_error = getattr(module, "ProcessingError", None)
            if processing_error is not None and isinstance(exc, processing_error):
                message = str(exc)
            else:
                log.exception("offline JSOC: export %s failed", export.requestid)
                message = f"Export processing failed: {exc}"
            with self._lock:
                export.status, export.error = 4, message

    def _make_files(self, export: Export, impatch) -> None:
        steps = "" if self.ignore_process else _steps_of(export.process)
        process = f"n=0|{steps}" if steps else "n=0|no_op"
        products = impatch.run(export.records, process, export.requestid) if export.records else []

        with self._lock:
            self._dir_serial += 1
            serial = self._dir_serial
        export_dir = f"/SUM1/D{serial}/S00000"
        folder = self.file_root / export_dir.lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)

        rows = self._write_fits(export, products, steps, folder)
        exptime = _exptime(self.clock())
        total = sum((folder / r["filename"]).stat().st_size for r in rows)
        size_mb = 0 if total <= 0 else (1 if total <= _MB else int((total + 0.5 * _MB) // _MB))
        is_tar = export.method.endswith("-tar")
        protocol = "fits" if export.protocol.lower().startswith("fits") else export.protocol

        header = [
            ("version", _PACKLIST_VERSION),
            ("requestid", export.requestid),
            ("method", export.method),
            ("protocol", protocol),
            ("count", str(len(rows))),
            ("size", str(size_mb)),
            ("exptime", exptime),
            ("dir", export_dir),
            ("status", "0"),
        ]
        if not rows:
            header.append(("warning", _NO_FILES_WARNING))
        index = dict(header)
        index["keywords"] = (
            "**IN FITS FILES**" if protocol == "fits" else f"{export_dir}/{export.requestid}.keywords.txt"
        )
        tar_path = f"{export_dir}/{export.requestid}.tar"
        if is_tar:
            index["tarfile"] = tar_path
        index["data"] = rows
        index_json = json.dumps(index, indent=2).encode() + b"\n"

        (folder / "index.txt").write_text(_index_txt(header, steps, rows))
        (folder / "index.json").write_bytes(index_json)
        (folder / "index.html").write_text(_index_html(header, index, steps, rows, is_tar))
        (folder / f"{export.requestid}.drmsrun").write_text(_drmsrun(export, steps, export_dir))

        served = ["index.txt", "index.json", "index.html", f"{export.requestid}.drmsrun"]
        if is_tar:
            malicious = bool(self.faults.malicious_tar)
            _write_tar(
                folder,
                folder / f"{export.requestid}.tar",
                [r["filename"] for r in rows] + served,
                malicious=malicious,
            )
            if malicious:
                self.faults.count("malicious_tar")
            # The drmsrun script deletes everything but the manifests and scripts after tarring.
            for row in rows:
                (folder / row["filename"]).unlink(missing_ok=True)
            served.append(f"{export.requestid}.tar")
        else:
            served.extend(r["filename"] for r in rows)

        with self._lock:
            export.dir = export_dir
            export.files = rows
            export.tarfile = tar_path if is_tar else None
            export.exptime = exptime
            export.index_json = index_json
            for name in served:
                self._files[f"{export_dir}/{name}"] = folder / name

    def _write_fits(self, export: Export, products: list, steps: str, folder: Path) -> list[dict]:
        from astropy.io import fits

        rows = []
        compress = "compress" in export.protocol.lower()
        for number, product in enumerate(products):
            record = product.record
            series = record.series.name + ("_mod" if steps else "")
            header = product.header
            segments = export.segments or list(record.series.segments)
            segment = segments[0]

            def keyword(name, record=record, header=header):
                # The value as jsoc_info prints it; keywords only the output has come from the header.
                value = record.keyword(name)
                if value == "Invalid KeyLink":
                    value = header.get(name, header.get(name.upper()))
                return None if value is None else str(value)

            if steps:
                # im_patch writes the "<series>_mod" records, whose segment files are "<segment>.fits".
                seg_file = f"{segment}.fits"
            else:
                try:
                    seg_file = record.series.segment(segment).filename
                except (AttributeError, KeyError):
                    seg_file = f"{segment}.fits"
            filename = expand_filenamefmt(
                export.filenamefmt,
                seriesname=series,
                recnum=record.recnum,
                segment=seg_file,
                keyword=keyword,
                count=number,
            )
            hdu_header = _fits_header(header)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                if compress:
                    comp = fits.CompImageHDU(product.data, hdu_header, compression_type="RICE_1")
                    hdul = fits.HDUList([fits.PrimaryHDU(), comp])
                else:
                    hdul = fits.HDUList([fits.PrimaryHDU(product.data, hdu_header)])
                hdul.writeto(folder / filename, overwrite=True, checksum=True)
            spec = _record_spec(record, series)
            rows.append({"record": f"{spec}{{{segment}}}", "filename": filename})
        return rows


def _record_spec(record, series: str) -> str:
    try:
        spec = record.spec
    except (AttributeError, NotImplementedError):
        spec = f"{record.series.name}[:#{record.recnum}]"
    return series + spec[len(record.series.name) :] if spec.startswith(record.series.name) else spec


_STRUCTURAL = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "PCOUNT",
    "GCOUNT",
    "XTENSION",
    "BSCALE",
    "BZERO",
    "CHECKSUM",
    "DATASUM",
    "END",
}


def _fits_header(header: dict):
    from astropy.io import fits

    out = fits.Header()
    for key, raw in header.items():
        value = raw
        ukey = key.upper()
        if ukey in _STRUCTURAL:
            continue
        if ukey in ("HISTORY", "COMMENT"):
            for line in [value] if isinstance(value, str) else list(value):
                out.add_history(str(line)) if ukey == "HISTORY" else out.add_comment(str(line))
            continue
        if hasattr(value, "item"):
            value = value.item()
        if value is not None and not isinstance(value, (str, int, float, bool)):
            value = str(value)
        # Long names as HIERARCH cards, stated explicitly so astropy does not warn.
        card_key = key if len(key) <= 8 and " " not in key else f"HIERARCH {key}"
        out.append(fits.Card(card_key, value), end=True)
    return out


def _index_txt(header: list[tuple[str, str]], steps: str, rows: list[dict]) -> str:
    lines = ["# JSOC "]
    lines += [f"{k}={v}" for k, v in header]
    if steps:
        lines.append("# PROCESSING ")
        for step in steps.split("|"):
            name, _, args = step.partition(",")
            lines.append(f"Processing: {name}")
            lines.append("  --")
            for arg in filter(None, args.split(",")):
                k, _, v = arg.partition("=")
                lines.append(f"{k}\t{v}")
    lines.append("# DATA ")
    lines += [f"{r['record']}\t{r['filename']}" for r in rows]
    return "\n".join(lines) + "\n"


def _index_html(header, index: dict, steps: str, rows: list[dict], is_tar: bool) -> str:
    server = "https://jsoc1.stanford.edu"
    out = [
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/loose.dtd">'
        '<html><head title="JSOC Data Export Request Results Index">',
        "</head><body>",
        "<h2>JSOC Data Request Summary</h2>",
        "<table>",
    ]
    out += [f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in header]
    out.append(f"<tr><td><b>keywords</b></td><td>{index['keywords']}</td></tr>")
    if is_tar:
        tar = index["tarfile"]
        out.append(f'<tr><td>tarfile</td><td><a href="{server}{tar}">{tar}</a></td></tr>')
    if steps:
        out += ["</table>", "<p><h2><b>Processing Steps</b></h2><p>", "<table>"]
        out += [f"<tr><td><b>{s.split(',')[0]}</b></td></tr>" for s in steps.split("|")]
    out.append("</table><p><h2><b>Selected Data</b></h2><p><table>")
    for r in rows:
        if is_tar:
            out.append(f"<tr><td>{r['record']}</td><td>{r['filename']}</td></tr>")
        else:
            out.append(
                f'<tr><td>{r["record"]}</td><td><A HREF="{server}{index["dir"]}/{r["filename"]}">'
                f"{r['filename']}</A></td></tr>"
            )
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"


def _drmsrun(export: Export, steps: str, export_dir: str) -> str:
    lines = [
        "#! /bin/csh -f",
        "# offline JSOC export script (a record of what was done, not run)",
        f"set REQDIR = {export_dir}",
        "cd $REQDIR",
    ]
    if steps:
        lines.append(f"# processing: {steps}")
    lines += [
        f"jsoc_export_as_fits reqid='{export.requestid}' expversion={_PACKLIST_VERSION} "
        f"rsquery='{export.ds}' n=0 path=$REQDIR ffmt='{export.filenamefmt}' method='{export.method}' "
        "protocol='fits'",
        "jsoc_export_make_index",
    ]
    if export.method.endswith("-tar"):
        lines += [f"tar  chf ../{export.requestid}.tar ./", f"mv ../{export.requestid}.tar ."]
    lines.append(f"set_info ds='jsoc.export[{export.requestid}]' Status=0")
    return "\n".join(lines) + "\n"


#: The extra members of a malicious tar (``Faults.malicious_tar``): name -> tar member attributes.
MALICIOUS_MEMBERS = {
    "../escaped.fits": {"type": tarfile.REGTYPE},
    "/tmp/offline-jsoc-absolute.fits": {"type": tarfile.REGTYPE},
    "./link.fits": {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
    "./device.fits": {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
}


def _write_tar(folder: Path, tar_path: Path, names: list[str], *, malicious: bool = False) -> None:
    # `tar chf ../REQ.tar ./`: an uncompressed tar whose members are "./" and "./<name>".
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tar:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        root.mtime = int(time.time())
        tar.addfile(root)
        for name in names:
            path = folder / name
            info = tarfile.TarInfo(f"./{name}")
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = int(path.stat().st_mtime)
            with path.open("rb") as fh:
                tar.addfile(info, fh)
        if malicious:
            payload = b"SIMPLE  =                    T" + b" " * 50
            payload = payload.ljust(2880, b" ")
            for name, attrs in MALICIOUS_MEMBERS.items():
                info = tarfile.TarInfo(name)
                info.mode = 0o644
                info.mtime = int(time.time())
                for key, value in attrs.items():
                    setattr(info, key, value)
                if info.isreg():
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                else:
                    tar.addfile(info)
