"""
The HTTP face of JSOC's CGI programs: series information, record queries, export requests,
export status and email registration checks.

This is the only module of the package that knows JSOC's URLs. Everything else asks a
`JSOCConnection` and gets plain Python values (numbers as ints, errors as `JSOCError`).

Why `requests` and not ``drms.Client``: drms 0.9 cannot send ``sizeratio`` (so JSOC sizes
a cutout export as full frames and refuses large ones with status 3), sends ``process`` under
the key ``process=n`` (a quirk that only works behind JSOC's CGI wrapper), has no timeouts or
retries around its status polling (one network hiccup aborts a wait) and polls with the
server's ``wait`` hint, which goes negative. The calls themselves are a handful of small JSON
requests, so one `requests.Session` with explicit timeouts and one retry helper is simpler
than working around drms.
"""

from __future__ import annotations

import collections
import email.utils
import json
import logging
import os
import platform
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any
from urllib.parse import quote, quote_plus

import requests

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_SERVER",
    "POLL_INTERVALS",
    "RETRY_AFTER_CAP",
    "RETRY_HTTP",
    "USER_AGENT",
    "JSOCConnection",
    "JSOCError",
    "backoff_delay",
    "parse_retry_after",
    "server_url",
]

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://jsoc.stanford.edu/"
SERVER_ENV = "SUNPY_JSOC_CUTOUT_SERVER"

_CGI = "cgi-bin/ajax/"
REGISTER_URL = "http://jsoc.stanford.edu/ajax/register_email.html"
HELP_EMAIL = "jsoc@sun.stanford.edu"


def _package_version() -> str:
    try:
        return metadata.version("sunpy-jsoc-cutout")
    except metadata.PackageNotFoundError:  # running from a source tree without metadata
        return "unknown"


USER_AGENT = (
    f"sunpy-jsoc-cutout/{_package_version()} (+https://github.com/sunpy/sunpy-jsoc-cutout) "
    f"requests/{requests.__version__} python/{platform.python_version()}"
)

# JSOC sends numbers as JSON strings in status-0 bodies (the verbatim index.json) and as
# numbers elsewhere; these keys are always numeric.
_NUMERIC_KEYS = frozenset({"status", "wait", "rcount", "count", "size", "runtime"})

# Statuses that mean "keep waiting" while an export is staged (12: queued in test mode).
_PENDING = frozenset({1, 2, 12})
_NOT_FOUND = 6

#: HTTP statuses that mean "not now, come again": retried with backoff.
RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})
# The POST of an export request is retried like every other call: JSOC answers an identical
# request within 24 h with the same request ID, so a retry never makes a second export. When
# the lost attempt was taken, the retry is answered with status 7 naming that very request
# (JSOC checks the pending limit before it looks for duplicates); `exp_request` says so.
_RETRY_HTTP = RETRY_HTTP
# Transport failures, including an answer cut off before its Content-Length (urllib3 raises
# IncompleteRead, which requests turns into ChunkedEncodingError).
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: Backoff of retried calls and downloads: ``BACKOFF_BASE * 2**attempt`` seconds, at most
#: ``BACKOFF_CAP``, half of it random ("equal jitter"). Module attributes, read at each retry.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
#: The longest ``Retry-After`` honoured, in seconds.
RETRY_AFTER_CAP = 300.0
#: Seconds between status polls of `JSOCConnection.wait_for_export` (the last repeats): quick
#: for a small export, then backing off to one poll every 30 s.
POLL_INTERVALS = (1, 2, 4, 8, 16, 30)

_REQUEST_ID = re.compile(r"JSOC_\d{8}_\d+(?:_X)?(?:_IN)?")


def server_url(server: str | None = None) -> str:
    """
    The base URL of the JSOC to talk to, with a trailing slash.

    Parameters
    ----------
    server : str, optional
        An explicit base URL. Without it ``$SUNPY_JSOC_CUTOUT_SERVER`` is used, then
        `DEFAULT_SERVER`.

    Returns
    -------
    str
    """
    url = server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    return url if url.endswith("/") else url + "/"


class JSOCError(Exception):
    """
    JSOC refused or failed a request.

    Parameters
    ----------
    message : str
        JSOC's own text and what to do about it.
    status : int, optional
        The JSOC status code, when JSOC gave one.
    requestid : str, optional
        The export request ID concerned, when there is one.
    pending : tuple of str, optional
        For status 7, the request IDs JSOC names as pending for this email address.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        requestid: str | None = None,
        pending: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.status = status
        self.requestid = requestid
        self.pending = pending


def _number(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def _normalise(body: dict) -> dict:
    """Return a copy of a JSOC JSON body with the numeric fields as numbers."""
    return {key: _number(value) if key in _NUMERIC_KEYS else value for key, value in body.items()}


def _plain_number(value: float | str) -> str:
    """Format a number as a plain decimal (no exponent), as the web form sends numbers."""
    if isinstance(value, str):
        return value
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    return text if text not in {"", "0", "-0"} else repr(float(value))


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """
    How long to wait before retry number ``attempt + 1``: capped exponential backoff with
    jitter, and at least the server's ``Retry-After`` (itself capped at `RETRY_AFTER_CAP`).

    Parameters
    ----------
    attempt : int
        0 for the first retry.
    retry_after : float, optional
        The server's ``Retry-After``, in seconds.

    Returns
    -------
    float
        Seconds.
    """
    # "Equal jitter": half fixed, half random, so retries from many clients spread out.
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay


def parse_retry_after(header: str | None) -> float | None:
    """
    Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None.

    Parameters
    ----------
    header : str or None

    Returns
    -------
    float or None
    """
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _retry_after(response: requests.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


def _error_text(body: Mapping) -> str:
    text = body.get("error") or body.get("msg") or "JSOC gave no error text"
    return str(text).strip()


class JSOCConnection:
    """
    A connection to one JSOC's CGI programs (``cgi-bin/ajax/jsoc_info``, ``jsoc_fetch`` and
    ``checkAddress.sh``).

    Every call has explicit (connect, read) timeouts and is retried with capped exponential
    backoff and jitter on transport errors, timeouts, HTTP 5xx and 429 (honouring
    ``Retry-After``).

    Parameters
    ----------
    server : str, optional
        Base URL of the JSOC; see `server_url`.
    timeout : tuple of float
        (connect, read) timeouts in seconds for every call.
    retries : int
        How many times a failed call is retried before giving up.
    session : requests.Session, optional
        The session to use; a new one by default.
    sleep : callable
        The function used to wait (between retries and between status polls); tests inject
        their own.
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        timeout: tuple[float, float] = (10, 60),
        retries: int = 5,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = server_url(server)
        self.timeout = timeout
        self.retries = retries
        self.session = session if session is not None else requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.sleep = sleep
        self._series: dict[str, dict] = {}
        self._addresses: dict[str, tuple[int, str]] = {}
        self._attempts = 0  # attempts the last call took
        #: Retries made, by cause ("HTTP 500", "ConnectionError", ...), for reports and tests.
        self.retried: collections.Counter = collections.Counter()

    def __repr__(self) -> str:
        return f"<JSOCConnection {self.base_url}>"

    def __enter__(self) -> JSOCConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying HTTP session."""
        self.session.close()

    # -- the one place that talks HTTP ---------------------------------------------------------

    def _call(self, program: str, params: Mapping[str, Any], *, post: bool = False) -> dict:
        """
        Call one CGI program and return its JSON body, retrying transient failures.
        """
        url = self.base_url + _CGI + program
        method = "POST" if post else "GET"
        kwargs = {"data": params} if post else {"params": params}
        attempt = 0
        self._attempts = 0
        while True:
            self._attempts = attempt + 1
            wait = None
            try:
                # The body is read here too (stream=False), so a cut answer fails here.
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except _TRANSIENT as exc:
                cause = type(exc).__name__
                problem = f"{cause}: {exc}"
            else:
                if response.status_code not in _RETRY_HTTP:
                    return self._json(response)
                cause = f"HTTP {response.status_code}"
                problem = f"HTTP {response.status_code} {response.reason}"
                wait = _retry_after(response)
                response.close()
            if attempt >= self.retries:
                raise JSOCError(
                    f"JSOC at {self.base_url} did not answer {program} after "
                    f"{attempt + 1} attempts (last: {problem}). JSOC may be down or "
                    "unreachable; try again later."
                )
            delay = backoff_delay(attempt, wait)
            self.retried[cause] += 1
            log.info("JSOC %s failed (%s); retrying in %.1f s", program, problem, delay)
            self.sleep(delay)
            attempt += 1

    @staticmethod
    def _json(response: requests.Response) -> dict:
        if not response.ok:
            raise JSOCError(
                f"JSOC answered HTTP {response.status_code} {response.reason} for "
                f"{response.url}: {response.text[:300]!r}"
            )
        raw = response.content
        try:
            # JSOC writes latin-1; the offline JSOC and most proxies write UTF-8.
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        try:
            body = json.loads(text)
        except ValueError:
            raise JSOCError(
                f"JSOC answered {response.url} with something that is not JSON: {text[:300]!r}"
            ) from None
        if not isinstance(body, dict):
            raise JSOCError(f"JSOC answered {response.url} with unexpected JSON: {text[:300]!r}")
        return body

    # -- jsoc_info ------------------------------------------------------------------------------

    def series_struct(self, series: str) -> dict:
        """
        The description of a series (prime keys, keywords, segments, ...), cached.

        Parameters
        ----------
        series : str

        Returns
        -------
        dict
            jsoc_info's ``series_struct`` body.

        Raises
        ------
        JSOCError
            If JSOC does not know the series.
        """
        key = series.lower()
        if key not in self._series:
            body = _normalise(self._call("jsoc_info", {"op": "series_struct", "ds": series}))
            if body.get("status") != 0:
                raise JSOCError(
                    f"JSOC cannot describe series {series!r}: {_error_text(body)}. Check the series name.",
                    status=body.get("status"),
                )
            self._series[key] = body
        return self._series[key]

    def rs_list(self, ds: str, keys: Sequence[str], segments: Sequence[str] = ()) -> dict[str, list[str]]:
        """
        Keyword (and segment) values of the records of a record set.

        Parameters
        ----------
        ds : str
            The record set.
        keys : sequence of str
            Keyword names.
        segments : sequence of str, optional
            Segment names.

        Returns
        -------
        dict
            Name -> list of values, one string per record, keywords then segments.
        """
        params = {"op": "rs_list", "ds": ds, "key": ",".join(keys)}
        if segments:
            params["seg"] = ",".join(segments)
        body = _normalise(self._call("jsoc_info", params))
        if body.get("status") != 0:
            raise JSOCError(
                f"JSOC cannot list the records of {ds!r}: {_error_text(body)}. Check the record set.",
                status=body.get("status"),
            )
        out: dict[str, list[str]] = {}
        for group in ("keywords", "segments"):
            for item in body.get(group) or ():
                out[item["name"]] = [str(v) for v in item.get("values") or ()]
        return out

    def rs_summary(self, ds: str) -> int:
        """
        The number of records in a record set.

        Parameters
        ----------
        ds : str

        Returns
        -------
        int
        """
        body = _normalise(self._call("jsoc_info", {"op": "rs_summary", "ds": ds}))
        if body.get("status") != 0:
            raise JSOCError(
                f"JSOC cannot count the records of {ds!r}: {_error_text(body)}. Check the record set.",
                status=body.get("status"),
            )
        return int(body.get("count", 0))

    # -- checkAddress.sh ------------------------------------------------------------------------

    def check_address(self, email: str) -> tuple[int, str]:
        """
        Whether an email address is registered for exports (status 2 means it is), cached.

        Parameters
        ----------
        email : str

        Returns
        -------
        (int, str)
            JSOC's status and message.
        """
        if email not in self._addresses:
            # checkAddress.sh unquotes the address once more (drms quotes it twice); keeping "@"
            # unquoted makes ordinary addresses read the same either way.
            body = self._call("checkAddress.sh", {"address": quote_plus(email, safe="@"), "checkonly": "1"})
            status = _number(body.get("status"))
            if not isinstance(status, int):
                raise JSOCError(f"checkAddress.sh gave no status for {email!r}: {body!r}")
            self._addresses[email] = (status, str(body.get("msg", "")))
        return self._addresses[email]

    # -- jsoc_fetch -----------------------------------------------------------------------------

    def exp_request(
        self,
        *,
        ds: str,
        process: str,
        notify: str,
        method: str,
        protocol: str,
        filenamefmt: str,
        sizeratio: float | str,
        requestor: str | None = None,
    ) -> dict:
        """
        Submit an export request, as JSOC's export web form does (a POST).

        Parameters
        ----------
        ds : str
            The record set.
        process : str
            The processing string, e.g. ``"n=0|im_patch,t_ref=...,..."``.
        notify : str
            A registered email address.
        method : str
            ``"url"`` or ``"url-tar"``.
        protocol : str
            E.g. ``"FITS"``.
        filenamefmt : str
            The file name format.
        sizeratio : float or str
            Output size / input size, used by JSOC to estimate the export size.
        requestor : str, optional
            A name for JSOC's records.

        Returns
        -------
        dict
            JSOC's answer (``status``, ``requestid``, ``wait``, ``rcount``, ``size`` ... with the
            numbers as ints). Status 2 (queued) for a new or a duplicate request; an identical
            request within 24 h gets the older request ID back.

        Raises
        ------
        JSOCError
            When JSOC refuses the request (status 3, 4, 7, 25 ...), with JSOC's text and what
            to do next.
        """
        params = {
            "op": "exp_request",
            "format": "json",
            "ds": ds,
            "process": process,
            "notify": notify,
            "method": method,
            "protocol": protocol,
            "filenamefmt": filenamefmt,
            "sizeratio": _plain_number(sizeratio),
        }
        if requestor:
            params["requestor"] = requestor
        body = _normalise(self._call("jsoc_fetch", params, post=True))
        status = body.get("status")
        if status in (0, 1, 2, 12):
            return body
        error = _status_error(body, body.get("requestid"), submitting=True)
        if status == 7 and self._attempts > 1:
            # JSOC checks the pending limit before it looks for a duplicate, so a retry of a
            # request whose answer was lost is refused with the request's own ID as pending.
            error = JSOCError(
                f"{error} An earlier attempt of this request failed in transit and may "
                "have been accepted: the pending export may be this request itself.",
                status=7,
                pending=error.pending,
            )
        raise error

    def exp_status(self, requestid: str) -> dict:
        """
        The status of an export request.

        Parameters
        ----------
        requestid : str

        Returns
        -------
        dict
            JSOC's answer with the numeric fields as numbers. For status 0 it is the export's
            ``index.json`` (``dir``, ``data``, ``tarfile`` for url-tar ...).
        """
        return _normalise(
            self._call("jsoc_fetch", {"op": "exp_status", "requestid": requestid, "format": "json"})
        )

    def wait_for_export(
        self,
        requestid: str,
        *,
        poll_interval: Iterable[float] | None = None,
        not_found_grace: float = 30.0,
        timeout: float | None = None,
    ) -> dict:
        """
        Poll an export until JSOC has staged it.

        JSOC's ``wait`` hint is not used: it is a fixed guess that goes negative.

        Parameters
        ----------
        requestid : str
        poll_interval : iterable of float, optional
            Seconds to wait before each poll; the last value repeats. `POLL_INTERVALS` by
            default.
        not_found_grace : float
            How long (in seconds of polling) status 6, "not found", is taken to mean "not yet
            visible" after a submission.
        timeout : float, optional
            Give up (with a `JSOCError`) after waiting this many seconds; the export carries
            on at JSOC and can be polled again later. By default wait as long as it takes.

        Returns
        -------
        dict
            The status-0 body (the export's index.json, numbers as ints).

        Raises
        ------
        JSOCError
            On status 3, 4, 5, 7, 25 or any other failure, with JSOC's text and the request ID.
        """
        schedule = list(POLL_INTERVALS if poll_interval is None else poll_interval) or [1.0]
        waited = 0.0
        polls = 0
        while True:
            try:
                body = self.exp_status(requestid)
            except JSOCError as exc:
                raise JSOCError(
                    f"{exc} The export {requestid} carries on at JSOC; poll it again "
                    "later with its request ID.",
                    requestid=requestid,
                ) from exc
            status = body.get("status")
            if status == 0:
                return body
            if status in _PENDING:
                pass
            elif status == _NOT_FOUND and waited < not_found_grace:
                # Right after a submission the ID may not be visible yet.
                pass
            elif status == _NOT_FOUND:
                raise JSOCError(
                    f"JSOC does not know export request {requestid} (status 6, "
                    f"{_error_text(body)!r}) after {waited:.0f} s. Check the request ID; "
                    "if it is right, submit the request again.",
                    status=6,
                    requestid=requestid,
                )
            else:
                raise _status_error(body, requestid)
            if timeout is not None and waited >= timeout:
                raise JSOCError(
                    f"Export {requestid} is still being staged by JSOC (status {status}) "
                    f"after {waited:.0f} s. It carries on at JSOC: wait for it again later "
                    "with its request ID.",
                    status=status,
                    requestid=requestid,
                )
            delay = schedule[min(polls, len(schedule) - 1)]
            self.sleep(delay)
            waited += delay
            polls += 1

    # -- URLs of exported files -----------------------------------------------------------------

    def file_url(self, path: str) -> str:
        """
        The URL of a file JSOC serves (an export's ``dir`` + file name, or its ``tarfile``).

        Parameters
        ----------
        path : str
            A server path such as ``"/SUM1/D123/S00000/x.fits"``.

        Returns
        -------
        str
        """
        return self.base_url + quote(path.lstrip("/"), safe="/:@+-._~")

    def export_urls(self, status_body: Mapping) -> list[str]:
        """
        The URLs to download for a staged export.

        Parameters
        ----------
        status_body : dict
            The status-0 body of `exp_status` / `wait_for_export`.

        Returns
        -------
        list of str
            The tar file's URL for url-tar exports, else one URL per exported file (rows
            without a usable file name, such as JSOC's "NoDataFile" or warnings, are left out).
        """
        tarfile = status_body.get("tarfile")
        if isinstance(tarfile, str) and tarfile.strip():
            return [self.file_url(tarfile.strip())]
        directory = str(status_body.get("dir") or "").rstrip("/")
        urls = []
        for row in status_body.get("data") or ():
            filename = row.get("filename") if isinstance(row, Mapping) else None
            record = str(row.get("record", "")) if isinstance(row, Mapping) else ""
            if (
                not isinstance(filename, str)
                or not filename.strip()
                or filename == "NoDataFile"
                or record.startswith("warning=")
            ):
                continue
            filename = filename.strip()
            # url_quick answers give absolute SUMS paths and an empty dir.
            urls.append(self.file_url(filename if filename.startswith("/") else f"{directory}/{filename}"))
        return urls


def _status_error(body: Mapping, requestid: str | None, *, submitting: bool = False) -> JSOCError:
    """Turn a failed JSOC status into a `JSOCError` that says what to do next."""
    status = body.get("status")
    text = _error_text(body)
    if requestid in (None, "", "VOID"):
        requestid = None
    what = "JSOC refused the export request" if submitting else f"JSOC export {requestid} failed"
    pending: tuple[str, ...] = ()
    if status == 3:
        advice = (
            "The export is too large for one request: split it into shorter time ranges or "
            "fewer channels, or use a smaller cutout box."
        )
    elif status == 4:
        advice = (
            "Check the record set (series name, times, keys) and that the notify address is "
            f"registered with JSOC ({REGISTER_URL})."
        )
    elif status == 5:
        advice = "JSOC keeps exported data for 7 days and this export has expired: submit the request again."
    elif status == 7:
        pending = tuple(dict.fromkeys(_REQUEST_ID.findall(text)))
        named = f" ({', '.join(pending)})" if pending else ""
        advice = (
            f"JSOC allows one pending export per email address: wait for the pending export{named} "
            "to finish, then submit again."
        )
    elif status == 25:
        rid = requestid or next(iter(_REQUEST_ID.findall(text)), None)
        requestid = rid
        advice = (
            f"Some of the data are offline: ask {HELP_EMAIL} for help, quoting request ID "
            f"{rid or '(none given)'}."
        )
    else:
        advice = "See JSOC's message above."
    return JSOCError(
        f"{what} (status {status}): {text!r}. {advice}",
        status=status if isinstance(status, int) else None,
        requestid=requestid,
        pending=pending,
    )
