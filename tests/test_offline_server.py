"""
The offline JSOC over real HTTP: CGI shapes, jsoc_fetch's rules, staging, files, tar and Range.
"""

from __future__ import annotations

import io
import re
import tarfile
import time

import pytest
import requests
from astropy.io import fits

from sunpy_jsoc_cutout.testing import REGISTERED_EMAILS, OfflineJSOC
from sunpy_jsoc_cutout.testing.exports import expand_filenamefmt

DS_171 = "aia.lev1_euv_12s[2014-02-05T08:00:00Z/24s][171]{image}"
PATCH = (
    "im_patch,t_start=2014-02-05T08:00:00,t_stop=2014-02-05T08:00:30,t=1,r=0,c=0,"
    "locunits=arcsec,boxunits=pixels,t_ref=2014-02-05T08:00:00,x=-200,y=100,width=64,height=48"
)
PROCESS = f"n=0|{PATCH}"
FMT = "aia.lev1_euv_12s.{T_REC:A}.{WAVELNTH}.{segment}"
# One day of two AIA channels: 14400 full frames of about 8 MB, over the 100000 MB cap.
DS_HUGE = "aia.lev1_euv_12s[2014-02-05T00:00:00Z/1d][171,193]{image}"


def cgi(jsoc, program):
    return jsoc.url + "cgi-bin/ajax/" + program


def exp_request(
    jsoc,
    *,
    ds=DS_171,
    process=PROCESS,
    notify="test@example.org",
    method="url",
    protocol="FITS",
    filenamefmt=FMT,
    **extra,
):
    data = {
        "op": "exp_request",
        "ds": ds,
        "process": process,
        "notify": notify,
        "method": method,
        "protocol": protocol,
        "filenamefmt": filenamefmt,
        "format": "json",
        "requestor": "tester",
        **extra,
    }
    response = requests.post(cgi(jsoc, "jsoc_fetch"), data=data, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


def exp_status(jsoc, requestid):
    response = requests.get(
        cgi(jsoc, "jsoc_fetch"), params={"op": "exp_status", "requestid": requestid}, timeout=30
    )
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


def wait_done(jsoc, requestid):
    # A bounded poll, not a timing assertion: staging is 0.5 s and im_patch on two small patches is quick.
    for _ in range(600):
        body = exp_status(jsoc, requestid)
        if body["status"] not in (1, 2):
            return body
        time.sleep(0.05)
    pytest.fail(f"export {requestid} never left the pending states")


@pytest.fixture
def slow_jsoc():
    """A server whose exports stay pending for the whole test (never processed)."""
    with OfflineJSOC(staging_seconds=3600) as jsoc:
        yield jsoc


@pytest.fixture(scope="module")
def done_exports():
    """One finished url and one finished url-tar export, shared by the download tests."""
    with OfflineJSOC(staging_seconds=0.2) as jsoc:
        url_id = exp_request(jsoc, notify="me@example.org")["requestid"]
        url_body = wait_done(jsoc, url_id)
        tar_id = exp_request(jsoc, notify="jsoc@sunpy.org", method="url-tar")["requestid"]
        tar_body = wait_done(jsoc, tar_id)
        yield jsoc, url_body, tar_body


# --- jsoc_info and checkAddress -------------------------------------------------------------------


def test_series_struct_describes_prime_keys_and_segments(offline_jsoc):
    body = requests.get(
        cgi(offline_jsoc, "jsoc_info"), params={"op": "series_struct", "ds": "aia.lev1_euv_12s"}, timeout=10
    ).json()
    assert body["status"] == 0
    assert body["primekeys"] == ["T_REC", "WAVELNTH"]
    assert "image" in [s["name"] for s in body["segments"]]
    assert offline_jsoc.calls["series_struct"] == 1


def test_rs_list_values_are_strings(offline_jsoc):
    body = requests.post(
        cgi(offline_jsoc, "jsoc_info"),
        data={
            "op": "rs_list",
            "ds": "aia.lev1_euv_12s[2014-02-05T08:00:00Z/1m][171]",
            "key": "T_REC,WAVELNTH,QUALITY",
            "seg": "image",
        },
        timeout=10,
    ).json()
    assert body["status"] == 0
    assert body["count"] == 5
    values = [v for kw in body["keywords"] for v in kw["values"]] + body["segments"][0]["values"]
    assert values
    assert all(isinstance(v, str) for v in values)
    assert body["keywords"][0]["values"][0] == "2014-02-05T08:00:01Z"


def test_rs_list_n_limits_the_records(offline_jsoc):
    body = requests.get(
        cgi(offline_jsoc, "jsoc_info"),
        params={
            "op": "rs_list",
            "ds": "aia.lev1_euv_12s[2014-02-05T08:00:00Z/1m][171]",
            "key": "T_REC",
            "n": "-2",
        },
        timeout=10,
    ).json()
    assert body["keywords"][0]["values"] == ["2014-02-05T08:00:37Z", "2014-02-05T08:00:49Z"]


def test_rs_summary_counts_records(offline_jsoc):
    ds = "aia.lev1_euv_12s[2014-02-05T08:00:00Z/1m][171,193]"
    params = {"op": "rs_summary", "ds": ds}
    body = requests.get(cgi(offline_jsoc, "jsoc_info"), params=params, timeout=10).json()
    assert body == {"count": 10, "runtime": body["runtime"], "status": 0}


@pytest.mark.parametrize("op", ["series_struct", "rs_list", "rs_summary"])
def test_jsoc_info_unknown_series_is_status_1(offline_jsoc, op):
    params = {"op": op, "ds": "nosuch.series[2014.01.01]", "key": "T_REC"}
    body = requests.get(cgi(offline_jsoc, "jsoc_info"), params=params, timeout=10).json()
    assert body["status"] == 1
    assert "series not found" in body["error"]


@pytest.mark.parametrize(
    ("address", "status"), [("test@example.org", 2), ("someone@example.com", 4), ("not-an-address", -2)]
)
def test_check_address_reports_registration(offline_jsoc, address, status):
    body = requests.get(
        cgi(offline_jsoc, "checkAddress.sh"), params={"address": address, "checkonly": "1"}, timeout=10
    ).json()
    assert body["status"] == status
    if status == 2:
        assert body["msg"] == "Email address is valid and registered."
    assert offline_jsoc.calls["checkAddress"] == 1


def test_check_address_accepts_drms_double_encoding(offline_jsoc):
    # drms quotes the address before requests encodes it again.
    body = requests.get(
        cgi(offline_jsoc, "checkAddress.sh"), params={"address": "me%40example.org"}, timeout=10
    ).json()
    assert body["status"] == 2


# --- exp_request rules ----------------------------------------------------------------------------


def test_new_export_answers_status_2_with_integer_numbers(slow_jsoc):
    body = exp_request(slow_jsoc)
    assert body["status"] == 2
    assert re.fullmatch(r"JSOC_\d{8}_\d{3,}", body["requestid"])
    assert body["requestid"].endswith("_001")
    assert body["wait"] == 10
    assert body["rcount"] == 2
    assert isinstance(body["size"], int)
    assert body["size"] > 0
    assert set(body) == {"status", "requestid", "method", "protocol", "wait", "rcount", "size"}
    assert slow_jsoc.calls["exp_request"] == 1
    assert slow_jsoc.exp_requests[0]["ds"] == DS_171


def test_pending_export_reports_status_2_with_integer_wait(slow_jsoc):
    requestid = exp_request(slow_jsoc)["requestid"]
    body = exp_status(slow_jsoc, requestid)
    assert body["status"] == 2
    assert isinstance(body["wait"], int)
    assert body["wait"] <= 10
    assert body["rcount"] == 0


def test_second_pending_export_by_same_email_gets_status_7(slow_jsoc):
    first = exp_request(slow_jsoc)["requestid"]
    body = exp_request(slow_jsoc, ds="aia.lev1_euv_12s[2014-02-05T09:00:00Z/24s][193]{image}")
    assert body["status"] == 7
    assert body["error"] == (
        f"User test@example.org has 1 pending export requests ({first}); please wait "
        "until at least one request has completed before submitting a new one."
    )
    assert len(slow_jsoc.exports) == 1


def test_other_email_may_export_while_one_is_pending(slow_jsoc):
    exp_request(slow_jsoc, notify="test@example.org")
    body = exp_request(
        slow_jsoc, notify="me@example.org", ds="aia.lev1_euv_12s[2014-02-05T09:00:00Z/24s][193]{image}"
    )
    assert body["status"] == 2


def test_duplicate_request_returns_the_older_id(slow_jsoc):
    first = exp_request(slow_jsoc, notify="test@example.org")["requestid"]
    again = exp_request(slow_jsoc, notify="me@example.org")
    assert again["status"] == 2
    assert again["requestid"] == first
    assert len(slow_jsoc.exports) == 1


def test_changed_filenamefmt_is_not_a_duplicate(slow_jsoc):
    first = exp_request(slow_jsoc, notify="test@example.org")["requestid"]
    other = exp_request(slow_jsoc, notify="me@example.org", filenamefmt="{seriesname}.{recnum:%d}.{segment}")
    assert other["requestid"] != first


def test_unregistered_email_is_refused(slow_jsoc):
    body = exp_request(slow_jsoc, notify="stranger@example.com")
    assert body == {
        "status": 4,
        "error": "Cannot process your request. Your notification email address has not been registered.",
    }
    assert slow_jsoc.exports == {}


def test_unknown_series_is_status_4(slow_jsoc):
    body = exp_request(slow_jsoc, ds="aia.nosuch[2014.01.01]")
    assert body["status"] == 4
    assert body["error"] == "Cannot export series 'aia.nosuch' - it does not exist."


def test_full_frame_size_over_cap_is_status_3(slow_jsoc):
    body = exp_request(slow_jsoc, ds=DS_HUGE)
    assert body["status"] == 3
    assert body["requestid"] == "VOID"
    assert body["error"] == "Request exceeds max byte limit of 100000MB"
    assert body["count"] == 14400
    assert body["size"] > 100000
    assert slow_jsoc.exports == {}


def test_sizeratio_brings_a_cutout_request_under_the_cap(slow_jsoc):
    full = exp_request(slow_jsoc, ds=DS_HUGE)["size"]
    body = exp_request(slow_jsoc, ds=DS_HUGE, sizeratio="0.01")
    assert body["status"] == 2
    assert body["size"] == pytest.approx(full * 0.01, abs=1)


def test_uncompressed_download_has_the_10gb_cap(slow_jsoc):
    body = exp_request(slow_jsoc, ds=DS_HUGE, sizeratio="0.5", protocol="FITS,**NONE**")
    assert body["status"] == 3
    assert body["error"] == "Request exceeds max byte limit of 10000MB"


def test_drms_process_spelling_reaches_the_export(slow_jsoc):
    # drms puts "process=n" in the key: urlencode({"process=n": "0|im_patch,..."})
    quote = requests.utils.quote
    query = (
        "op=exp_request&format=json&ds="
        + quote(DS_171, safe="")
        + "&notify=test%40example.org&method=url&protocol=fits&filenamefmt="
        + quote(FMT, safe="")
        + "&process%3Dn="
        + quote("0|" + PATCH, safe="")
        + "&requestor=tester"
    )
    body = requests.get(cgi(slow_jsoc, "jsoc_fetch") + "?" + query, timeout=10).json()
    assert body["status"] == 2
    assert slow_jsoc.exports[body["requestid"]].process == PROCESS
    assert slow_jsoc.exp_requests[-1]["process"] == PROCESS


def test_form_process_spelling_reaches_the_export(slow_jsoc):
    body = exp_request(slow_jsoc)
    assert slow_jsoc.exports[body["requestid"]].process == PROCESS


# --- exp_status -----------------------------------------------------------------------------------


def test_malformed_request_id_is_bad_requestid(offline_jsoc):
    body = exp_status(offline_jsoc, "JSOC_2014")
    assert body == {"status": 4, "error": "Bad RequestID 'JSOC_2014' provided."}


def test_unknown_request_id_is_status_4(offline_jsoc):
    body = exp_status(offline_jsoc, "JSOC_20140101_999")
    assert body["status"] == 4
    assert "JSOC_20140101_999" in body["error"]


def test_finished_export_body_has_string_numbers(done_exports):
    _, body, _ = done_exports
    assert body["status"] == "0"
    assert list(body)[:9] == [
        "version",
        "requestid",
        "method",
        "protocol",
        "count",
        "size",
        "exptime",
        "dir",
        "status",
    ]
    assert all(isinstance(body[k], str) for k in list(body)[:9])
    assert body["count"] == "2"
    assert body["keywords"] == "**IN FITS FILES**"
    assert "wait" not in body
    assert "tarfile" not in body
    assert re.fullmatch(r"/SUM\d+/D\d+/S00000", body["dir"])
    assert [row["filename"] for row in body["data"]] == [
        "aia.lev1_euv_12s.2014-02-05T080001Z.171.image.fits",
        "aia.lev1_euv_12s.2014-02-05T080013Z.171.image.fits",
    ]
    assert body["data"][0]["record"] == "aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z][171]{image}"


def test_processing_error_ends_export_in_status_4(offline_jsoc):
    requestid = exp_request(offline_jsoc, process="n=0|im_patch,t=0,x=0,y=0,width=10,height=10")["requestid"]
    body = wait_done(offline_jsoc, requestid)
    assert body["status"] == 4
    assert body["error"]
    assert body["contact"] == "jsoc_help@jsoc.stanford.edu"
    assert offline_jsoc.exp_requests[0]["notify"] == "test@example.org"


def test_expired_export_is_status_5_and_its_files_are_gone(offline_jsoc):
    requestid = exp_request(offline_jsoc)["requestid"]
    done = wait_done(offline_jsoc, requestid)
    file_url = offline_jsoc.url + done["dir"].lstrip("/") + "/" + done["data"][0]["filename"]
    assert requests.head(file_url, timeout=10).status_code == 200
    offline_jsoc.expire(requestid)
    body = exp_status(offline_jsoc, requestid)
    assert body["status"] == 5
    assert body["error"] == "Request was completed but is now deleted, 7 day limit exceeded"
    assert requests.get(file_url, timeout=10).status_code == 404


def test_finished_duplicate_is_answered_with_the_older_id(offline_jsoc):
    first = exp_request(offline_jsoc)["requestid"]
    wait_done(offline_jsoc, first)
    again = exp_request(offline_jsoc)
    assert again["status"] == 2
    assert again["requestid"] == first
    assert exp_status(offline_jsoc, first)["status"] == "0"


# --- files ----------------------------------------------------------------------------------------


def test_url_export_files_download_with_checksums(done_exports):
    jsoc, body, _ = done_exports
    for row in body["data"]:
        response = requests.get(jsoc.url + body["dir"].lstrip("/") + "/" + row["filename"], timeout=10)
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content)
        with fits.open(io.BytesIO(response.content), checksum=True) as hdul:
            header = hdul[-1].header
            assert "CHECKSUM" in header
            assert "DATASUM" in header
            assert hdul[-1].data.shape == (48, 64)
    assert jsoc.calls["download"] >= 2


def test_url_tar_export_holds_fits_and_index_files(done_exports):
    jsoc, _, body = done_exports
    requestid = body["requestid"]
    assert body["method"] == "url-tar"
    assert body["tarfile"] == f"{body['dir']}/{requestid}.tar"
    response = requests.get(jsoc.url + body["tarfile"].lstrip("/"), timeout=10)
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        # GNU tar's "./" directory entry reads back as "."
        assert all(m.name.startswith("./") or m.name == "." for m in tar.getmembers())
        expected = {f"./{row['filename']}" for row in body["data"]}
        expected |= {"./index.json", "./index.txt", "./index.html", f"./{requestid}.drmsrun"}
        assert names == expected
        index = tar.extractfile("./index.json").read()
    assert b'"tarfile"' in index


def test_url_tar_export_keeps_only_the_tar_and_manifests(done_exports):
    jsoc, _, body = done_exports
    fits_url = jsoc.url + body["dir"].lstrip("/") + "/" + body["data"][0]["filename"]
    assert requests.get(fits_url, timeout=10).status_code == 404
    assert requests.get(jsoc.url + body["dir"].lstrip("/") + "/index.json", timeout=10).status_code == 200


def test_range_request_answers_206_with_content_range(done_exports):
    jsoc, body, _ = done_exports
    file_url = jsoc.url + body["dir"].lstrip("/") + "/" + body["data"][0]["filename"]
    whole = requests.get(file_url, timeout=10).content
    part = requests.get(file_url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert part.content == whole[100:200]
    tail = requests.get(file_url, headers={"Range": "bytes=2000-"}, timeout=10)
    assert tail.content == whole[2000:]
    assert requests.get(file_url, headers={"Range": f"bytes={len(whole)}-"}, timeout=10).status_code == 416


def test_head_gives_content_length_without_body(done_exports):
    jsoc, body, _ = done_exports
    file_url = jsoc.url + body["dir"].lstrip("/") + "/" + body["data"][0]["filename"]
    size = len(requests.get(file_url, timeout=10).content)
    head = requests.head(file_url, timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == size
    assert head.content == b""


def test_unknown_path_is_404(offline_jsoc):
    assert requests.get(offline_jsoc.url + "SUM1/D1/S00000/nothing.fits", timeout=10).status_code == 404
    assert requests.get(offline_jsoc.url + "../etc/passwd", timeout=10).status_code == 404


# --- server and filenames -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
def test_non_loopback_host_is_refused(host):
    with pytest.raises(ValueError, match="loopback"):
        OfflineJSOC(host=host)


def test_unknown_knob_is_refused():
    with pytest.raises(TypeError, match="knob"):
        OfflineJSOC(latency_ms=5)


def test_jsoc_env_points_the_package_at_the_server(jsoc_env):
    import os

    assert os.environ["SUNPY_JSOC_CUTOUT_SERVER"] == jsoc_env.url
    assert os.environ["JSOC_EMAIL"] in REGISTERED_EMAILS
    assert jsoc_env.url.startswith("http://127.0.0.1:")


class _Record:
    recnum = 42

    def keyword(self, name):
        return {"T_REC": "2014.02.05_08:00:45_TAI", "CAMERA": "2", "WAVELNTH": "171"}.get(name)


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("hmi.M_45s.{T_REC:A}.{CAMERA}.{segment}", "hmi.M_45s.20140205_080045_TAI.2.magnetogram.fits"),
        ("{seriesname}.{recnum:%d}.{segment}", "hmi.M_45s_mod.42.magnetogram.fits"),
        ("{seriesname}.{T_REC}.{NOSUCHKEY}", "hmi.M_45s_mod.2014.02.05_08:00:45_TAI.ERROR"),
        ("x.{WAVELNTH:%05d}.{#}.fits", "x.00171.00003.fits"),
    ],
)
def test_filenamefmt_expands_like_jsoc(fmt, name):
    record = _Record()
    got = expand_filenamefmt(
        fmt,
        seriesname="hmi.M_45s_mod",
        recnum=record.recnum,
        segment="magnetogram.fits",
        keyword=record.keyword,
        count=3,
    )
    assert got == name


# --- the wait hint and fault injection ------------------------------------------------------------


def test_wait_counts_down_and_goes_negative_as_jsocs_fixed_guess():
    now = [1.4e9]
    with OfflineJSOC(staging_seconds=3600, clock=lambda: now[0]) as jsoc:
        requestid = exp_request(jsoc)["requestid"]
        now[0] += 4
        assert exp_status(jsoc, requestid)["wait"] == 6
        now[0] += 21
        assert exp_status(jsoc, requestid)["wait"] == -15


def info(jsoc):
    return requests.get(cgi(jsoc, "jsoc_info"), params={"op": "series_struct", "ds": "hmi.M_45s"}, timeout=10)


def test_cgi_500_and_429_faults_answer_without_running_the_program(offline_jsoc):
    offline_jsoc.faults.set(cgi_500=1.0)
    assert info(offline_jsoc).status_code == 500
    offline_jsoc.faults.set(cgi_500=0.0, cgi_429=1.0, retry_after=4)
    response = info(offline_jsoc)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "4"
    assert offline_jsoc.calls["series_struct"] == 0
    assert offline_jsoc.faults.injected == {"cgi_500": 1, "cgi_429": 1}


def test_cgi_reset_fault_closes_the_connection_without_an_answer(offline_jsoc):
    offline_jsoc.faults.cgi_reset = 1.0
    with pytest.raises(requests.ConnectionError):
        info(offline_jsoc)
    assert offline_jsoc.faults.injected["cgi_reset"] == 1


def test_cgi_cut_fault_runs_the_program_and_cuts_its_answer(slow_jsoc):
    slow_jsoc.faults.cgi_cut = 1.0
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(
            cgi(slow_jsoc, "jsoc_fetch"),
            data={"op": "exp_request", "ds": DS_171, "process": PROCESS, "notify": "test@example.org"},
            timeout=10,
        )
    assert len(slow_jsoc.exports) == 1  # the export was taken; only its answer was lost


def test_cgi_faults_can_be_limited_to_some_ops(offline_jsoc):
    offline_jsoc.faults.set(cgi_500=1.0, cgi_ops={"exp_status"})
    assert info(offline_jsoc).status_code == 200
    assert (
        requests.get(cgi(offline_jsoc, "jsoc_fetch"), params={"op": "exp_status"}, timeout=10).status_code
        == 500
    )


def test_max_faults_stops_the_faults_after_that_many(offline_jsoc):
    offline_jsoc.faults.set(cgi_500=1.0, max_faults=2)
    assert [info(offline_jsoc).status_code for _ in range(3)] == [500, 500, 200]


def test_seeded_faults_repeat(offline_jsoc):
    def pattern():
        offline_jsoc.faults.seed(7)
        return [info(offline_jsoc).status_code for _ in range(12)]

    offline_jsoc.faults.cgi_500 = 0.5
    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 500}


def get_file(jsoc, body, **headers):
    url = jsoc.url + body["dir"].lstrip("/") + "/" + body["data"][0]["filename"]
    return requests.get(url, headers=headers, timeout=10)


def served_bytes(jsoc, body):
    return jsoc.manager.file_for(body["dir"] + "/" + body["data"][0]["filename"]).read_bytes()


@pytest.fixture
def fresh_done_export():
    with OfflineJSOC(staging_seconds=0.2) as jsoc:
        body = wait_done(jsoc, exp_request(jsoc)["requestid"])
        yield jsoc, body


def test_download_truncate_fault_sends_a_short_file_that_looks_whole(fresh_done_export):
    jsoc, body = fresh_done_export
    jsoc.faults.download_truncate = 1.0
    response = get_file(jsoc, body)
    whole = served_bytes(jsoc, body)
    assert int(response.headers["Content-Length"]) == len(response.content) < len(whole)
    assert whole.startswith(response.content)


def test_download_corrupt_fault_changes_one_byte(fresh_done_export):
    jsoc, body = fresh_done_export
    jsoc.faults.download_corrupt = 1.0
    got, whole = get_file(jsoc, body).content, served_bytes(jsoc, body)
    assert len(got) == len(whole)
    assert sum(a != b for a, b in zip(got, whole, strict=True)) == 1


def test_download_cut_fault_sends_less_than_its_content_length(fresh_done_export):
    jsoc, body = fresh_done_export
    jsoc.faults.download_cut = 1.0
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get_file(jsoc, body)
    assert jsoc.faults.injected["download_cut"] == 1


def test_ignore_range_answers_a_range_request_with_the_whole_file(fresh_done_export):
    jsoc, body = fresh_done_export
    jsoc.faults.ignore_range = True
    response = get_file(jsoc, body, Range="bytes=100-")
    assert response.status_code == 200
    assert response.content == served_bytes(jsoc, body)


def test_status6_polls_answer_status_6_to_the_first_polls_of_a_new_export(slow_jsoc):
    slow_jsoc.faults.status6_polls = 2
    requestid = exp_request(slow_jsoc)["requestid"]
    assert [exp_status(slow_jsoc, requestid)["status"] for _ in range(3)] == [6, 6, 2]


def test_malicious_tar_holds_a_traversal_an_absolute_path_a_symlink_and_a_device():
    with OfflineJSOC(staging_seconds=0.2, faults={"malicious_tar": True}) as jsoc:
        body = wait_done(jsoc, exp_request(jsoc, method="url-tar")["requestid"])
        data = requests.get(jsoc.url + body["tarfile"].lstrip("/"), timeout=10).content
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["../escaped.fits"].isreg()
    assert members["/tmp/offline-jsoc-absolute.fits"].isreg()
    assert members["./link.fits"].issym()
    assert members["./device.fits"].ischr()
    assert jsoc.faults.injected["malicious_tar"] == 1


def test_retention_can_be_shortened_while_running(fresh_done_export):
    jsoc, body = fresh_done_export
    jsoc.retention_seconds = 0
    assert exp_status(jsoc, body["requestid"])["status"] == 5


def test_unknown_fault_knob_is_refused(offline_jsoc):
    with pytest.raises(TypeError, match="knob"):
        offline_jsoc.faults.set(latency=1)
