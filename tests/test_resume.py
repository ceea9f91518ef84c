"""
Fetches that pick up where they stopped, resume by request ID, and JSOC's limits (status 7,
splitting, status 3 and 4), against the offline JSOC over real HTTP.
"""

import threading
from pathlib import Path

import astropy.units as u
import pytest
import requests
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

from sunpy_jsoc_cutout import JSOCCutoutClient, chunking, plan, retrieve
from sunpy_jsoc_cutout.jsoc import JSOCError
from sunpy_jsoc_cutout.ledger import Ledger
from sunpy_jsoc_cutout.testing.server import OfflineJSOC

START = "2014-02-05T08:00:00"
CENTRE = SkyCoord(
    -200 * u.arcsec, 150 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=START)
)
ONE_CHANNEL = a.jsoc_cutout.Wavelength(171 * u.AA)
FOUR_CHANNELS = a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA, 211 * u.AA, 304 * u.AA)


def cutout_query(channels=ONE_CHANNEL, minutes=1):
    return (
        a.Time(START, f"2014-02-05T08:{minutes:02d}:00"),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=CENTRE, width=60 * u.pix, height=40 * u.pix),
        channels,
    )


def fetch(res, folder, **kwargs):
    return Fido.fetch(res, path=Path(folder) / "{file}", progress=False, **kwargs)


def request_params(res, notify="test@example.org"):
    """The export request the client makes for the first block of ``res``, made by hand."""
    export = res[0].exports[0]
    planned = export.plan
    return {
        "op": "exp_request",
        "format": "json",
        "ds": planned.record_set,
        "process": planned.process(export.t_start, export.t_stop),
        "notify": notify,
        "method": planned.method(export.count),
        "protocol": planned.protocol,
        "filenamefmt": planned.filenamefmt,
        "sizeratio": plan.plain_number(planned.size_ratio, 6),
    }


def submit_elsewhere(server, params):
    """An export request sent directly over HTTP, as the web form or drms would."""
    answer = requests.post(server.url + "cgi-bin/ajax/jsoc_fetch", data=params, timeout=10).json()
    assert answer["status"] == 2, answer
    return answer["requestid"]


@pytest.fixture
def server_env(monkeypatch, tmp_path):
    """Point the package at a server made by the test (for knobs the fixture does not set)."""

    servers = []

    def make(**knobs):
        server = OfflineJSOC(staging_seconds=0.3, **knobs).start()
        servers.append(server)
        monkeypatch.setenv("SUNPY_JSOC_CUTOUT_SERVER", server.url)
        monkeypatch.setenv("JSOC_EMAIL", "test@example.org")
        monkeypatch.setenv("SUNPY_JSOC_CUTOUT_STATE", str(tmp_path / "state"))
        monkeypatch.setenv("PARFIVE_HIDE_PROGRESS", "1")
        return server

    yield make
    for server in servers:
        server.stop()


# --- the ledger: repeated and interrupted fetches --------------------------------------------


@pytest.mark.parametrize(
    ("channels", "minutes", "method"), [(ONE_CHANNEL, 1, "url"), (FOUR_CHANNELS, 2, "url-tar")]
)
def test_repeated_fetch_costs_no_export_request_and_no_download(
    jsoc_env, tmp_path, channels, minutes, method
):
    res = Fido.search(*cutout_query(channels, minutes))
    first = fetch(res, tmp_path / "out")
    calls = dict(jsoc_env.calls)
    again = fetch(res, tmp_path / "out")

    assert [e.method for e in jsoc_env.exports.values()] == [method]
    assert not first.errors
    assert not again.errors
    assert sorted(again) == sorted(first)
    assert len(first) == len(res[0])
    for op in ("exp_request", "exp_status", "checkAddress", "download"):
        assert jsoc_env.calls[op] == calls[op], op


def test_deleted_file_is_downloaded_again_from_the_same_export(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    first = fetch(res, tmp_path)
    downloads = jsoc_env.calls["download"]
    Path(first[0]).unlink()

    again = fetch(res, tmp_path)

    assert jsoc_env.calls["exp_request"] == 1
    assert jsoc_env.calls["download"] == downloads + 1
    assert sorted(again) == sorted(first)
    assert Path(first[0]).exists()


def test_file_in_place_but_not_in_the_ledger_is_verified_not_downloaded(jsoc_env, tmp_path):
    # As after a run killed between moving a file into place and recording it.
    res = Fido.search(*cutout_query(minutes=1))
    first = fetch(res, tmp_path)
    with Ledger(tmp_path / "state") as book:
        (entry,) = book.entries()
        for file in book.files(entry.id):
            book.set_file(entry.id, file.filename, "expected")
    downloads = jsoc_env.calls["download"]

    again = fetch(res, tmp_path)

    assert jsoc_env.calls["download"] == downloads
    assert sorted(again) == sorted(first)
    with Ledger(tmp_path / "state") as book:
        assert {f.state for f in book.files(entry.id)} == {"done"}


def test_expired_export_is_submitted_again(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    fetch(res, tmp_path / "one")
    (old,) = jsoc_env.exports
    jsoc_env.expire(old)

    files = fetch(res, tmp_path / "two")

    assert not files.errors
    assert len(files) == 2
    assert jsoc_env.calls["exp_request"] == 2
    assert len(jsoc_env.exports) == 2
    states = {row["Request ID"]: row["State"] for row in JSOCCutoutClient().exports()}
    assert states[old] == "expired"


def test_valid_ledgered_export_is_reused_for_another_folder(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    fetch(res, tmp_path / "one")
    files = fetch(res, tmp_path / "two")
    assert len(files) == 2
    assert all(str(tmp_path / "two") in f for f in files)
    assert jsoc_env.calls["exp_request"] == 1


def test_intent_without_request_id_adopts_the_pending_export(jsoc_env, tmp_path):
    # A run killed after sending its request but before recording the answer: the export is
    # pending at JSOC, the ledger holds only the intent.
    res = Fido.search(*cutout_query(minutes=1))
    params = request_params(res)
    submit_elsewhere(jsoc_env, params)
    with Ledger(tmp_path / "state") as book:
        book.begin(jsoc_env.url, {**params, "notify": "test@example.org"})

    files = fetch(res, tmp_path)

    assert not files.errors
    assert len(files) == 2
    assert len(jsoc_env.exports) == 1
    (row,) = JSOCCutoutClient().exports()
    assert row["Request ID"] == next(iter(jsoc_env.exports))
    assert row["State"] == "done"


# --- resume by request ID ---------------------------------------------------------------------


def test_fetch_request_finishes_an_export_made_elsewhere(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(FOUR_CHANNELS, minutes=2))
    requestid = submit_elsewhere(jsoc_env, request_params(res))
    client = JSOCCutoutClient()

    files = client.fetch_request(requestid, path=tmp_path / "{file}", progress=False)

    assert not files.errors
    assert len(files) == 12
    assert all(retrieve.verify_fits(Path(f)) is None for f in files)
    assert not any(p.suffix == ".tar" for p in tmp_path.iterdir())
    assert jsoc_env.calls["exp_request"] == 1  # only the one made elsewhere
    table = client.export_files(requestid)
    assert set(table["State"]) == {"done"}
    assert sorted(table["Path"]) == sorted(files)


def test_fetch_request_twice_costs_no_download(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    requestid = submit_elsewhere(jsoc_env, request_params(res))
    client = JSOCCutoutClient()
    first = client.fetch_request(requestid, path=tmp_path / "{file}", progress=False)
    calls = dict(jsoc_env.calls)

    again = client.fetch_request(requestid, path=tmp_path / "{file}", progress=False)

    assert sorted(again) == sorted(first)
    assert jsoc_env.calls["download"] == calls["download"]
    assert jsoc_env.calls["exp_status"] == calls["exp_status"]


def test_fetch_of_a_query_reuses_an_export_resumed_by_request_id(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    requestid = submit_elsewhere(jsoc_env, request_params(res))
    JSOCCutoutClient().fetch_request(requestid, path=tmp_path / "{file}", progress=False)
    files = fetch(res, tmp_path)
    assert len(files) == 2
    assert list(jsoc_env.exports) == [requestid]


def test_fetch_request_refuses_what_is_not_a_request_id(jsoc_env, tmp_path):
    with pytest.raises(ValueError, match="is not a JSOC request ID"):
        JSOCCutoutClient().fetch_request("JSOC-2014", path=tmp_path / "{file}")


def test_fetch_request_of_an_expired_export_says_to_submit_again(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    requestid = submit_elsewhere(jsoc_env, request_params(res))
    jsoc_env.expire(requestid)
    with pytest.raises(JSOCError, match="7 day") as info:
        JSOCCutoutClient().fetch_request(requestid, path=tmp_path / "{file}")
    assert info.value.status == 5


# --- the ledger listing -----------------------------------------------------------------------


def test_exports_lists_each_export_with_its_state_and_files(jsoc_env, tmp_path):
    client = JSOCCutoutClient()
    assert len(client.exports()) == 0
    res = Fido.search(*cutout_query(minutes=1))
    files = fetch(res, tmp_path)

    (row,) = client.exports()
    assert row["Request ID"] == next(iter(jsoc_env.exports))
    assert (row["State"], row["Status"], row["Files"], row["Done"], row["Failed"]) == ("done", 0, 2, 2, 0)
    assert row["Record set"] == res[0].exports[0].plan.record_set
    assert row["Server"] == jsoc_env.url
    table = client.export_files(row["Request ID"])
    assert sorted(table["Path"]) == sorted(files)
    assert all(size > 0 for size in table["Size"])


def test_export_files_of_an_unknown_request_id(jsoc_env):
    with pytest.raises(KeyError, match="no export JSOC_20140205_999"):
        JSOCCutoutClient().export_files("JSOC_20140205_999")


# --- status 7: one pending export per email ---------------------------------------------------


def test_pending_export_of_another_process_is_waited_for(jsoc_env, tmp_path):
    other = Fido.search(*cutout_query(a.jsoc_cutout.Wavelength(193 * u.AA), minutes=1))
    theirs = submit_elsewhere(jsoc_env, request_params(other))
    res = Fido.search(*cutout_query(minutes=1))

    files = fetch(res, tmp_path)

    assert not files.errors
    assert len(files) == 2
    assert jsoc_env.calls["exp_request"] == 3  # theirs, ours refused with status 7, ours again
    assert len(jsoc_env.exports) == 2
    assert jsoc_env.exports[theirs].status == 0
    with Ledger(tmp_path / "state") as book:
        (entry,) = book.entries()
        assert [status for _, status, _ in book.history(entry.id)][:2] == [7, 2]


def test_identical_export_pending_elsewhere_is_adopted(jsoc_env, tmp_path):
    res = Fido.search(*cutout_query(minutes=1))
    theirs = submit_elsewhere(jsoc_env, request_params(res))

    files = fetch(res, tmp_path)

    assert not files.errors
    assert len(files) == 2
    assert list(jsoc_env.exports) == [theirs]


def test_two_fetches_with_one_email_at_once_both_complete(jsoc_env, tmp_path):
    queries = [cutout_query(ONE_CHANNEL), cutout_query(a.jsoc_cutout.Wavelength(193 * u.AA))]
    searches = [Fido.search(*q) for q in queries]
    results = [None, None]

    def run(i):
        # The client itself: Fido.fetch runs parfive's event loop, which wants the main thread.
        results[i] = JSOCCutoutClient().fetch(
            searches[i][0], path=tmp_path / str(i) / "{file}", progress=False
        )

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [len(r) for r in results] == [2, 2]
    assert not results[0].errors
    assert not results[1].errors
    assert len(jsoc_env.exports) == 2


# --- splitting and JSOC's refusals ------------------------------------------------------------


def test_split_keeps_the_channels_of_one_slot_together():
    trecs = ["t0"] * 4 + ["t1"] * 4 + ["t2"] * 4
    assert chunking.split(trecs, 8) == [chunking.Chunk("t0", "t1", 8), chunking.Chunk("t2", "t2", 4)]
    assert chunking.split(trecs, 5) == [chunking.Chunk(t, t, 4) for t in ("t0", "t1", "t2")]


def test_split_of_a_slot_larger_than_the_limit_gives_it_a_chunk_of_its_own():
    assert chunking.split(["a", "b", "b", "b", "c"], 2) == [
        chunking.Chunk("a", "a", 1),
        chunking.Chunk("b", "b", 3),
        chunking.Chunk("c", "c", 1),
    ]


def test_split_under_the_limit_is_one_chunk():
    assert chunking.split(["a", "b"], 15000) == [chunking.Chunk("a", "b", 2)]
    assert chunking.split([], 10) == []


def test_record_limit_is_the_instrument_limit_for_small_cutouts():
    assert chunking.max_records("AIA", 0.001) == chunking.RECORD_LIMITS["AIA"]
    assert chunking.max_records("HMI", 0.001) == chunking.RECORD_LIMITS["HMI"]


def test_record_limit_keeps_full_frames_under_the_size_cap_with_margin():
    n = chunking.max_records("AIA", 1.0)
    estimate = n * chunking.FRAME_BYTES["AIA"]
    assert estimate <= chunking.MAX_EXPORT_BYTES * chunking.SIZE_MARGIN
    assert (n + 1) * chunking.FRAME_BYTES["AIA"] > chunking.MAX_EXPORT_BYTES * chunking.SIZE_MARGIN
    # Two segments per record halve it.
    assert chunking.max_records("AIA", 1.0, segments=2) == n // 2


def test_chunk_record_set_narrows_the_time_filter_and_keeps_the_rest():
    record_set = "aia.lev1_euv_12s[2014.02.05_08:00:35_TAI-2014.02.05_09:00:35_TAI@60s][171,193]{image}"
    chunk = chunking.Chunk("2014-02-05T08:10:01Z", "2014-02-05T08:19:01Z", 20)
    assert chunking.chunk_record_set(record_set, chunk) == (
        "aia.lev1_euv_12s[2014.02.05_08:10:36_TAI-2014.02.05_08:19:36_TAI@60s][171,193]{image}"
    )
    hmi = chunking.Chunk("2014.02.05_08:00:00_TAI", "2014.02.05_08:01:30_TAI", 3)
    assert chunking.chunk_record_set("hmi.M_45s[2014.02.05_07:59:59_TAI-2014.02.05_09:00:00_TAI]", hmi) == (
        "hmi.M_45s[2014.02.05_08:00:00_TAI-2014.02.05_08:01:30_TAI]"
    )


def test_large_query_is_split_into_exports_within_the_record_limit(server_env, tmp_path, monkeypatch):
    server = server_env(max_records=4)
    monkeypatch.setitem(chunking.RECORD_LIMITS, "AIA", 4)
    res = Fido.search(*cutout_query(FOUR_CHANNELS, minutes=2))  # 3 slots x 4 channels

    files = fetch(res, tmp_path)

    assert not files.errors
    assert len(files) == len(res[0]) == 12
    assert [export.rcount for export in server.exports.values()] == [4, 4, 4]
    assert len({Path(f).name for f in files}) == 12
    # A repeated fetch of a split query costs nothing either.
    calls = dict(server.calls)
    fetch(res, tmp_path)
    assert (server.calls["exp_request"], server.calls["download"]) == (
        calls["exp_request"],
        calls["download"],
    )


def test_next_export_is_submitted_while_the_previous_one_downloads(server_env, tmp_path, monkeypatch):
    server = server_env()
    monkeypatch.setitem(chunking.RECORD_LIMITS, "AIA", 4)
    res = Fido.search(*cutout_query(FOUR_CHANNELS, minutes=1))  # 2 slots x 4 channels: 2 exports
    overlapped = threading.Event()
    real_fetch_export = retrieve.fetch_export

    def first_download_waits_for_the_second_submission(body, *args, **kwargs):
        if body["requestid"] == min(server.exports):
            # Without overlap the second export would only be submitted after this returns.
            overlapped.wait(30)
        return real_fetch_export(body, *args, **kwargs)

    def watch_submissions(*args, **kwargs):
        if len(server.exports) >= 2:
            overlapped.set()

    monkeypatch.setattr(retrieve, "fetch_export", first_download_waits_for_the_second_submission)
    original = server.manager.request

    def request(params):
        answer = original(params)
        watch_submissions()
        return answer

    monkeypatch.setattr(server.manager, "request", request)

    files = fetch(res, tmp_path)

    assert overlapped.is_set()
    assert len(files) == 8
    assert not files.errors


def test_too_large_export_is_reported_with_jsocs_message(jsoc_env, tmp_path, monkeypatch):
    from sunpy_jsoc_cutout.testing import exports

    monkeypatch.setitem(exports.SEGMENT_BYTES, ("AIA", "image"), 10**16)
    res = Fido.search(*cutout_query(minutes=1))

    files = fetch(res, tmp_path)

    assert len(files) == 0
    (error,) = files.errors
    assert isinstance(error.exception, JSOCError)
    assert error.exception.status == 3
    assert "max byte limit" in str(error.exception)
    assert "split it" in str(error.exception)
    (row,) = JSOCCutoutClient().exports()
    assert row["State"] == "failed"


def test_refused_export_does_not_stop_the_other_blocks(server_env, tmp_path):
    server = server_env(max_records=2)
    res = Fido.search(*cutout_query(ONE_CHANNEL | FOUR_CHANNELS, minutes=1))

    files = fetch(res, tmp_path)

    assert len(files) == 2  # the one-channel block
    (error,) = files.errors
    assert error.exception.status == 4
    assert "too many records" in str(error.exception)
    assert "Check the record set" in str(error.exception)
    assert len(server.exports) == 1


def test_file_failing_the_cutout_check_is_an_error_and_fetched_again(jsoc_env, tmp_path, monkeypatch):
    from sunpy_jsoc_cutout import verify

    res = Fido.search(*cutout_query(minutes=1))
    rejected = []

    def reject_first(paths, expectation, **kwargs):
        rejected.extend(sorted(paths)[:1])
        return [(rejected[0], "box is 4096x4096, not 60x40")]

    monkeypatch.setattr(verify, "check_cutouts", reject_first)
    files = fetch(res, tmp_path)

    assert len(files) == 1
    (error,) = files.errors
    assert "not the cutout asked for: box is 4096x4096" in str(error.exception)
    assert not Path(rejected[0]).exists()  # set aside, not left at its name
    monkeypatch.undo()
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_SERVER", jsoc_env.url)
    monkeypatch.setenv("JSOC_EMAIL", "test@example.org")
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_STATE", str(tmp_path / "state"))
    again = fetch(res, tmp_path)
    assert len(again) == 2
    assert jsoc_env.calls["exp_request"] == 1
