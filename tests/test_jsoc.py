"""Tests of `sunpy_jsoc_cutout.jsoc` against a small scripted HTTP server on loopback."""

import email.utils
import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest

from sunpy_jsoc_cutout import jsoc as jsoc_module
from sunpy_jsoc_cutout.jsoc import (
    DEFAULT_SERVER,
    JSOCConnection,
    JSOCError,
    backoff_delay,
    parse_retry_after,
    server_url,
)

RID = "JSOC_20140205_001"


class ScriptedJSOC:
    """
    A loopback HTTP server that answers each CGI program from a script of responses.

    A response is a dict (sent as JSON with HTTP 200), a tuple (HTTP code, body, headers),
    "reset" (close the connection without answering), ("slow", seconds, response) or ("cut",
    dict) (a JSON body cut half-way: Content-Length of the whole, then the connection closes).
    """

    def __init__(self):
        self.script = defaultdict(deque)
        self.requests = []
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.handle_error = lambda request, address: None  # broken pipes after timeouts
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def add(self, program, *responses):
        self.script[program].extend(responses)

    def calls(self, program):
        return [r for r in self.requests if r["program"] == program]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, method):
                parts = urlsplit(self.path)
                if method == "POST":
                    length = int(self.headers.get("Content-Length", 0))
                    params = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                else:
                    params = parse_qs(parts.query, keep_blank_values=True)
                program = parts.path.rsplit("/", 1)[-1]
                server.requests.append(
                    {
                        "method": method,
                        "program": program,
                        "path": parts.path,
                        "params": {k: v[0] for k, v in params.items()},
                        "headers": dict(self.headers),
                    }
                )
                queue = server.script[program]
                response = queue.popleft() if queue else (404, b"no such thing", {})
                if isinstance(response, tuple) and response[0] == "slow":
                    time.sleep(response[1])
                    response = response[2]
                if response == "reset":
                    self.close_connection = True
                    return
                if isinstance(response, tuple) and response[0] == "cut":
                    data = json.dumps(response[1]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                if isinstance(response, dict):
                    response = (200, response, {})
                code, body, headers = response
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

        return Handler


@pytest.fixture
def jsoc():
    server = ScriptedJSOC()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def conn(jsoc, sleeps):
    with JSOCConnection(jsoc.url, sleep=sleeps.append, timeout=(2, 5)) as connection:
        yield connection


def export_args(**changes):
    args = {
        "ds": "aia.lev1_euv_12s[2014-02-05T08:00:00Z/1m][171,193]{image}",
        "process": "n=0|im_patch,t_start=2014-02-05T08:00:00,t=0,r=0,c=0,locunits=arcsec,"
        "boxunits=arcsec,t_ref=2014-02-05T08:00:00,x=-100,y=200,width=300,height=300",
        "notify": "test@example.org",
        "method": "url-tar",
        "protocol": "FITS",
        "filenamefmt": "aia.lev1_euv_12s.{T_REC:A}.{WAVELNTH}.{segment}",
        "sizeratio": 0.0149,
        "requestor": "sunpy-jsoc-cutout",
    }
    args.update(changes)
    return args


def status0_body(**changes):
    body = {
        "version": "1",
        "requestid": RID,
        "method": "url",
        "protocol": "FITS",
        "count": "2",
        "size": "3",
        "exptime": "2014.02.05_08:10:00_UT",
        "dir": "/SUM1/D1000001/S00000",
        "status": "0",
        "keywords": "**IN FITS FILES**",
        "data": [
            {
                "record": "aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z][171]{image}",
                "filename": "aia.lev1_euv_12s.2014-02-05T080001Z.171.image.fits",
            },
            {
                "record": "aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z][193]{image}",
                "filename": "aia.lev1_euv_12s.2014-02-05T080001Z.193.image.fits",
            },
        ],
    }
    body.update(changes)
    return body


def pending(status=2, wait=10):
    return {
        "status": status,
        "requestid": RID,
        "method": "url",
        "protocol": "FITS",
        "wait": wait,
        "rcount": 0,
        "size": 0,
    }


# -- server URL ---------------------------------------------------------------------------------


def test_server_url_prefers_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("SUNPY_JSOC_CUTOUT_SERVER", raising=False)
    assert server_url() == DEFAULT_SERVER
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_SERVER", "http://127.0.0.1:9999")
    assert server_url() == "http://127.0.0.1:9999/"
    assert server_url("http://example.org/jsoc") == "http://example.org/jsoc/"


# -- requests as JSOC expects them ------------------------------------------------------------


def test_exp_request_posts_the_fields_of_the_web_form(jsoc, conn):
    jsoc.add(
        "jsoc_fetch",
        {
            "status": 2,
            "requestid": RID,
            "method": "url-tar",
            "protocol": "FITS",
            "wait": 10,
            "rcount": 10,
            "size": 320,
        },
    )
    conn.exp_request(**export_args())
    (call,) = jsoc.calls("jsoc_fetch")
    assert call["method"] == "POST"
    assert call["path"] == "/cgi-bin/ajax/jsoc_fetch"
    expected = export_args(sizeratio="0.0149")
    expected.update(op="exp_request", format="json")
    assert call["params"] == expected


def test_every_call_names_the_package_in_its_user_agent(jsoc, conn):
    jsoc.add("jsoc_info", {"status": 0, "count": 4})
    conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI/3m]")
    assert jsoc.requests[0]["headers"]["User-Agent"].startswith("sunpy-jsoc-cutout/")


def test_check_address_is_asked_once_per_address(jsoc, conn):
    jsoc.add("checkAddress.sh", {"status": 2, "msg": "Email address is valid and registered."})
    assert conn.check_address("test@example.org") == (2, "Email address is valid and registered.")
    assert conn.check_address("test@example.org")[0] == 2
    (call,) = jsoc.calls("checkAddress.sh")
    # checkAddress.sh unquotes the address once more; a plain address reads the same either way.
    assert unquote_plus(call["params"]["address"]) == "test@example.org"
    assert call["params"]["checkonly"] == "1"


def test_series_struct_is_cached_per_connection(jsoc, conn):
    jsoc.add("jsoc_info", {"status": 0, "primekeys": ["T_REC", "WAVELNTH"], "segments": []})
    first = conn.series_struct("aia.lev1_euv_12s")
    assert conn.series_struct("AIA.lev1_euv_12s") is first
    assert len(jsoc.calls("jsoc_info")) == 1
    assert jsoc.requests[0]["params"] == {"op": "series_struct", "ds": "aia.lev1_euv_12s"}


def test_unknown_series_raises_with_jsocs_text(jsoc, conn):
    jsoc.add("jsoc_info", {"status": 1, "error": "Cannot open series 'aia.nonsense'"})
    with pytest.raises(JSOCError, match=r"Cannot open series 'aia\.nonsense'"):
        conn.series_struct("aia.nonsense")


def test_rs_list_returns_values_by_name(jsoc, conn):
    jsoc.add(
        "jsoc_info",
        {
            "status": 0,
            "count": 2,
            "runtime": "0.01",
            "keywords": [
                {"name": "T_REC", "values": ["2014-02-05T08:00:01Z", "2014-02-05T08:00:13Z"]},
                {"name": "QUALITY", "values": ["0x00000000", "0x00000000"]},
            ],
            "segments": [{"name": "image", "values": ["/SUM1/a.fits", "/SUM1/b.fits"]}],
        },
    )
    got = conn.rs_list("aia.lev1_euv_12s[2014-02-05T08:00:00Z/20s][171]", ["T_REC", "QUALITY"], ["image"])
    assert got == {
        "T_REC": ["2014-02-05T08:00:01Z", "2014-02-05T08:00:13Z"],
        "QUALITY": ["0x00000000", "0x00000000"],
        "image": ["/SUM1/a.fits", "/SUM1/b.fits"],
    }
    assert jsoc.requests[0]["params"]["key"] == "T_REC,QUALITY"
    assert jsoc.requests[0]["params"]["seg"] == "image"


def test_rs_summary_count_is_an_int_even_when_sent_as_a_string(jsoc, conn):
    jsoc.add("jsoc_info", {"status": "0", "count": "9600"})
    assert conn.rs_summary("aia.lev1_euv_12s[2014-02-05T08:00:00Z/8h]") == 9600


# -- numeric normalisation --------------------------------------------------------------------


def test_status_0_body_numbers_sent_as_strings_become_ints(jsoc, conn):
    jsoc.add("jsoc_fetch", status0_body())
    body = conn.exp_status(RID)
    assert body["status"] == 0
    assert body["count"] == 2
    assert body["size"] == 3
    assert body["requestid"] == RID
    assert body["dir"] == "/SUM1/D1000001/S00000"
    assert body["version"] == "1"  # not a number JSOC promises


def test_exp_request_numbers_sent_as_ints_stay_ints(jsoc, conn):
    jsoc.add(
        "jsoc_fetch",
        {
            "status": 2,
            "requestid": RID,
            "method": "url",
            "protocol": "FITS",
            "wait": 10,
            "rcount": 4241,
            "size": 64080,
        },
    )
    body = conn.exp_request(**export_args())
    assert (body["status"], body["wait"], body["rcount"], body["size"]) == (2, 10, 4241, 64080)


def test_exp_request_numbers_sent_as_strings_become_ints(jsoc, conn):
    jsoc.add("jsoc_fetch", {"status": "2", "requestid": RID, "wait": "10", "rcount": "3", "size": "1.5"})
    body = conn.exp_request(**export_args())
    assert (body["status"], body["wait"], body["rcount"], body["size"]) == (2, 10, 3, 1.5)


# -- status handling --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "advice"),
    [
        (3, "Request exceeds max byte limit of 100000MB", "split"),
        (
            4,
            "Cannot process your request. Your notification email address has not been registered.",
            "registered",
        ),
        (4, "Bad record-set query", "record set"),
        (
            7,
            f"User test@example.org has 1 pending export requests ({RID}); please wait until at least "
            "one request has completed before submitting a new one.",
            "wait for the pending export",
        ),
    ],
)
def test_refused_export_request_quotes_jsoc_and_says_what_to_do(jsoc, conn, status, error, advice):
    jsoc.add("jsoc_fetch", {"status": status, "requestid": "VOID", "wait": 0, "error": error})
    with pytest.raises(JSOCError) as info:
        conn.exp_request(**export_args())
    assert info.value.status == status
    assert info.value.requestid is None
    assert error in str(info.value)
    assert advice in str(info.value)


def test_status_7_names_the_pending_request_ids(jsoc, conn):
    jsoc.add(
        "jsoc_fetch",
        {
            "status": 7,
            "error": "User test@example.org has 2 pending export requests "
            "(JSOC_20140205_001,JSOC_20140205_002); please wait.",
        },
    )
    with pytest.raises(JSOCError) as info:
        conn.exp_request(**export_args())
    assert info.value.pending == ("JSOC_20140205_001", "JSOC_20140205_002")


@pytest.mark.parametrize(
    ("status", "error", "advice"),
    [
        (3, "Request too large", "split"),
        (4, "RecordSet specified does not exist", "record set"),
        (5, "Request was completed but is now deleted, 7 day limit exceeded", "submit the request again"),
        (
            25,
            "One or more data files are offline; please send a request for help to "
            f"jsoc@sun.stanford.edu; {RID}",
            f"jsoc@sun.stanford.edu for help, quoting request ID {RID}",
        ),
    ],
)
def test_failed_export_raises_with_jsocs_text_and_the_request_id(jsoc, conn, status, error, advice):
    jsoc.add(
        "jsoc_fetch",
        pending(2),
        {"status": status, "requestid": RID, "error": error, "contact": "jsoc_help@jsoc.stanford.edu"},
    )
    with pytest.raises(JSOCError) as info:
        conn.wait_for_export(RID)
    assert info.value.status == status
    assert info.value.requestid == RID
    assert error in str(info.value)
    assert advice in str(info.value)


# -- polling --------------------------------------------------------------------------------


def test_wait_for_export_follows_the_poll_schedule_and_ignores_the_wait_hint(jsoc, conn, sleeps):
    jsoc.add(
        "jsoc_fetch",
        pending(2, wait=10),
        pending(1, wait=-5),
        pending(1, wait=-40),
        pending(1, wait=-90),
        pending(1, wait=-200),
        status0_body(),
    )
    body = conn.wait_for_export(RID, poll_interval=(1, 2, 4))
    assert body["status"] == 0
    assert sleeps == [1, 2, 4, 4, 4]
    assert all(
        call["params"] == {"op": "exp_status", "requestid": RID, "format": "json"}
        for call in jsoc.calls("jsoc_fetch")
    )


def test_default_poll_schedule_backs_off_to_30_seconds(jsoc, conn, sleeps):
    jsoc.add("jsoc_fetch", *[pending(1)] * 8, status0_body())
    conn.wait_for_export(RID)
    assert sleeps == [1, 2, 4, 8, 16, 30, 30, 30]


def test_status_6_right_after_submission_is_waited_out(jsoc, conn, sleeps):
    jsoc.add(
        "jsoc_fetch", {"status": 6, "error": "Request not found"}, {"status": 6}, pending(1), status0_body()
    )
    assert conn.wait_for_export(RID, poll_interval=(1, 2))["status"] == 0
    assert sleeps == [1, 2, 2]


def test_status_6_beyond_the_grace_period_is_an_error(jsoc, conn, sleeps):
    jsoc.add("jsoc_fetch", *[{"status": 6, "error": "Request not found"}] * 10)
    with pytest.raises(JSOCError, match="does not know export request") as info:
        conn.wait_for_export(RID, poll_interval=(1, 2), not_found_grace=5)
    assert info.value.status == 6
    assert sum(sleeps) >= 5
    assert len(jsoc.calls("jsoc_fetch")) == 4  # slept 1, 2, 2: 5 s of grace


def test_wait_for_export_gives_up_after_its_timeout(jsoc, conn, sleeps):
    jsoc.add("jsoc_fetch", *[pending(1)] * 10)
    with pytest.raises(JSOCError, match="still being staged") as info:
        conn.wait_for_export(RID, poll_interval=(2,), timeout=5)
    assert info.value.requestid == RID
    assert sleeps == [2, 2, 2]


# -- retries --------------------------------------------------------------------------------


def test_http_500_is_retried_then_succeeds(jsoc, conn, sleeps):
    jsoc.add("jsoc_info", (500, b"Internal Server Error", {}), {"status": 0, "count": 5})
    assert conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI/4m]") == 5
    assert len(jsoc.calls("jsoc_info")) == 2
    assert len(sleeps) == 1
    assert 0.5 <= sleeps[0] <= 1.0


def test_connection_reset_is_retried_then_succeeds(jsoc, conn, sleeps):
    jsoc.add("jsoc_fetch", "reset", "reset", status0_body())
    assert conn.exp_status(RID)["status"] == 0
    assert len(sleeps) == 2
    assert sleeps[1] >= 1.0  # the backoff grows


def test_read_timeout_is_retried(jsoc, sleeps):
    jsoc.add("jsoc_info", ("slow", 1.0, {"status": 0, "count": 1}), {"status": 0, "count": 2})
    with JSOCConnection(jsoc.url, sleep=sleeps.append, timeout=(2, 0.2)) as connection:
        assert connection.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI]") == 2
    assert len(sleeps) == 1


def test_retry_after_is_honoured(jsoc, conn, sleeps):
    jsoc.add("jsoc_info", (429, b"slow down", {"Retry-After": "7"}), {"status": 0, "count": 1})
    conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI]")
    assert sleeps[0] >= 7


def test_client_errors_are_not_retried(jsoc, conn, sleeps):
    jsoc.add("jsoc_info", (404, b"Not Found", {}))
    with pytest.raises(JSOCError, match="HTTP 404"):
        conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI]")
    assert len(jsoc.calls("jsoc_info")) == 1
    assert sleeps == []


def test_retries_stop_after_the_limit(jsoc, sleeps):
    jsoc.add("jsoc_fetch", *[(503, b"busy", {})] * 5)
    with (
        JSOCConnection(jsoc.url, sleep=sleeps.append, retries=2) as connection,
        pytest.raises(JSOCError, match="after 3 attempts"),
    ):
        connection.exp_status(RID)
    assert len(jsoc.calls("jsoc_fetch")) == 3


def test_exp_request_is_retried_after_a_transport_error(jsoc, conn, sleeps):
    # Safe: JSOC answers an identical request within 24 h with the same request ID.
    jsoc.add("jsoc_fetch", "reset", {"status": 2, "requestid": RID, "wait": 10})
    assert conn.exp_request(**export_args())["requestid"] == RID
    assert len(jsoc.calls("jsoc_fetch")) == 2


def test_status_7_after_a_retried_submission_says_it_may_be_this_request(jsoc, conn):
    jsoc.add(
        "jsoc_fetch",
        "reset",
        {"status": 7, "error": f"User test@example.org has 1 pending export requests ({RID}); please wait."},
    )
    with pytest.raises(JSOCError, match="may be this request itself") as info:
        conn.exp_request(**export_args())
    assert info.value.pending == (RID,)


def test_exp_request_is_retried_after_a_server_error(jsoc, conn, sleeps):
    # A 500 may come from a request that was taken: the retry is then answered with the same ID
    # (JSOC's 24 h duplicate check) or with status 7 naming it, never with a second export.
    jsoc.add("jsoc_fetch", (500, b"Internal Server Error", {}), {"status": 2, "requestid": RID, "wait": 10})
    assert conn.exp_request(**export_args())["requestid"] == RID
    assert len(jsoc.calls("jsoc_fetch")) == 2


def test_an_answer_cut_before_its_content_length_is_retried(jsoc, conn, sleeps):
    jsoc.add("jsoc_info", ("cut", {"status": 0, "count": 3}), {"status": 0, "count": 4})
    assert conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI/3m]") == 4
    assert len(jsoc.calls("jsoc_info")) == 2
    assert conn.retried["ChunkedEncodingError"] == 1


def test_retries_are_counted_by_cause(jsoc, conn, sleeps):
    jsoc.add("jsoc_info", (503, b"busy", {}), "reset", {"status": 0, "count": 1})
    conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI]")
    assert conn.retried == {"HTTP 503": 1, "ConnectionError": 1}


def test_backoff_grows_is_capped_and_keeps_half_its_value(monkeypatch):
    monkeypatch.setattr(jsoc_module, "BACKOFF_BASE", 1.0)
    monkeypatch.setattr(jsoc_module, "BACKOFF_CAP", 8.0)
    delays = [backoff_delay(attempt) for attempt in range(6)]
    assert [0.5 <= delays[0] <= 1, 1 <= delays[1] <= 2, 2 <= delays[2] <= 4] == [True] * 3
    assert all(4 <= d <= 8 for d in delays[3:])


def test_backoff_is_at_least_retry_after_up_to_its_cap():
    assert backoff_delay(0, retry_after=20) == 20
    assert backoff_delay(0, retry_after=1e6) == jsoc_module.RETRY_AFTER_CAP


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7.0), ("0", 0.0), (None, None), ("soon", None), ("-3", 0.0)]
)
def test_retry_after_is_read_as_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_is_read_as_the_time_until_then():
    when = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 90 <= parse_retry_after(when) <= 100


def test_an_answer_that_is_not_json_is_a_clear_error(jsoc, conn):
    jsoc.add("jsoc_info", (200, b"<html>Service temporarily unavailable</html>", {}))
    with pytest.raises(JSOCError, match="not JSON"):
        conn.rs_summary("hmi.M_45s[2014.02.05_08:00_TAI]")


# -- URLs -----------------------------------------------------------------------------------


def test_export_urls_of_a_url_export_are_one_per_usable_file():
    conn = JSOCConnection("http://127.0.0.1:1/")
    body = status0_body()
    body["data"] = [
        *body["data"],
        {"record": "x", "filename": "NoDataFile"},
        {"record": "warning=No FITS files were exported.", "filename": ""},
    ]
    assert conn.export_urls(body) == [
        "http://127.0.0.1:1/SUM1/D1000001/S00000/aia.lev1_euv_12s.2014-02-05T080001Z.171.image.fits",
        "http://127.0.0.1:1/SUM1/D1000001/S00000/aia.lev1_euv_12s.2014-02-05T080001Z.193.image.fits",
    ]


def test_export_urls_of_a_url_tar_export_are_the_tar_only():
    conn = JSOCConnection("http://127.0.0.1:1/")
    body = status0_body(method="url-tar", tarfile=f"/SUM1/D1000001/S00000/{RID}.tar")
    assert conn.export_urls(body) == [f"http://127.0.0.1:1/SUM1/D1000001/S00000/{RID}.tar"]


def test_export_urls_take_absolute_paths_as_they_are():
    conn = JSOCConnection("http://127.0.0.1:1/")
    body = {
        "status": 0,
        "dir": "",
        "data": [
            {
                "record": "hmi.v_45s[2016.04.01_00:00:00_TAI][2]{Dopplergram}",
                "filename": "/SUM58/D803708321/S00008/Dopplergram.fits",
            }
        ],
    }
    assert conn.export_urls(body) == ["http://127.0.0.1:1/SUM58/D803708321/S00008/Dopplergram.fits"]
