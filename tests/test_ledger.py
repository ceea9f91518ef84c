"""The request ledger on its own: SQLite in a temporary folder, no server."""

import sqlite3
import threading

import pytest

from sunpy_jsoc_cutout.ledger import LEDGER_NAME, RETENTION_SECONDS, Ledger, export_key

SERVER = "http://127.0.0.1:1/"
PARAMS = {
    "ds": "aia.lev1_euv_12s[2014.02.05_08:00:36_TAI-2014.02.05_08:03:36_TAI@60s][171]{image}",
    "process": "n=0|im_patch,t_start=2014-02-05T08:00:01Z,t_stop=2014-02-05T08:03:01Z,t=0",
    "protocol": "FITS",
    "method": "url",
    "filenamefmt": "aia.lev1_euv_12s.{T_REC:A}.{WAVELNTH}.{segment}",
    "sizeratio": "0.000572",
    "notify": "test@example.org",
}
BODY = {
    "requestid": "JSOC_20140205_001",
    "status": 0,
    "dir": "/SUM1/D1/S00000",
    "data": [
        {"record": "aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z][171]{image}", "filename": "a.fits"},
        {"record": "aia.lev1_euv_12s_mod[2014-02-05T08:01:01Z][171]{image}", "filename": "b.fits"},
        {"record": "warning=No FITS files were exported.", "filename": "NoDataFile"},
    ],
}


def key_of(params):
    return export_key(**{k: params[k] for k in ("ds", "process", "protocol", "method", "filenamefmt")})


@pytest.fixture
def book(tmp_path):
    with Ledger(tmp_path / "state") as ledger:
        yield ledger


def test_ledger_lives_in_the_state_folder_in_wal_mode(tmp_path):
    with Ledger(tmp_path / "state") as ledger:
        assert ledger.path == tmp_path / "state" / LEDGER_NAME
    with sqlite3.connect(tmp_path / "state" / LEDGER_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_key_depends_on_every_field_jsoc_dedups_on():
    base = key_of(PARAMS)
    for field in ("ds", "process", "protocol", "method", "filenamefmt"):
        assert key_of({**PARAMS, field: PARAMS[field] + "x"}) != base
    # notify and sizeratio are not part of JSOC's duplicate check
    assert key_of({**PARAMS, "notify": "me@example.org", "sizeratio": "1"}) == base


def test_intent_is_on_disk_before_the_request_id(tmp_path):
    with Ledger(tmp_path) as ledger:
        export_id = ledger.begin(SERVER, PARAMS)
    # A new connection (as after a kill) finds the intent under the plan's key.
    with Ledger(tmp_path) as again:
        entry = again.find(SERVER, key_of(PARAMS))
        assert entry.id == export_id
        assert entry.state == "submitting"
        assert entry.requestid is None
        assert entry.ds == PARAMS["ds"]


def test_request_id_recorded_and_found_by_key_and_by_id(book):
    export_id = book.begin(SERVER, PARAMS)
    assert book.set_request_id(export_id, "JSOC_20140205_001") == export_id
    entry = book.find(SERVER, key_of(PARAMS))
    assert (entry.requestid, entry.state) == ("JSOC_20140205_001", "submitted")
    assert entry.submitted is not None
    assert book.by_request_id(SERVER, "JSOC_20140205_001").id == export_id
    assert book.by_request_id("http://elsewhere/", "JSOC_20140205_001") is None


def test_same_key_on_another_server_is_another_export(book):
    book.begin(SERVER, PARAMS)
    assert book.find("http://other:2/", key_of(PARAMS)) is None


def test_duplicate_answer_merges_into_the_older_entry(book):
    first = book.begin(SERVER, PARAMS)
    book.set_request_id(first, "JSOC_20140205_001")
    book.add_status(first, 2, "submitted")
    second = book.begin(SERVER, PARAMS)
    book.add_status(second, 7, "pending")
    # JSOC answered the second, identical request with the first one's ID.
    assert book.set_request_id(second, "JSOC_20140205_001") == first
    assert [e.id for e in book.entries()] == [first]
    assert [status for _, status, _ in book.history(first)] == [2, 7]


def test_expired_and_failed_exports_are_not_found_for_reuse(book):
    export_id = book.begin(SERVER, PARAMS)
    book.set_request_id(export_id, "JSOC_20140205_001")
    book.set_state(export_id, "expired", "status 5")
    assert book.find(SERVER, key_of(PARAMS)) is None
    newer = book.begin(SERVER, PARAMS)
    book.set_state(newer, "failed", "status 4")
    assert book.find(SERVER, key_of(PARAMS)) is None
    assert [e.state for e in book.entries()] == ["expired", "failed"]


def test_entry_with_request_id_is_preferred_over_a_newer_intent(book):
    known = book.begin(SERVER, PARAMS)
    book.set_request_id(known, "JSOC_20140205_001")
    book.begin(SERVER, PARAMS)  # e.g. a concurrent run's intent
    assert book.find(SERVER, key_of(PARAMS)).id == known


def test_staged_body_lists_the_expected_files(book):
    export_id = book.begin(SERVER, PARAMS)
    book.set_request_id(export_id, "JSOC_20140205_001")
    book.set_staged(export_id, BODY)
    entry = book.get(export_id)
    assert entry.state == "staged"
    assert entry.status_body["dir"] == "/SUM1/D1/S00000"
    files = book.files(export_id)
    assert [(f.filename, f.state) for f in files] == [("a.fits", "expected"), ("b.fits", "expected")]
    assert files[0].record.startswith("aia.lev1_euv_12s_mod[2014-02-05T08:00:01Z]")


def test_file_states_survive_a_second_staging(book):
    export_id = book.adopt(SERVER, "JSOC_20140205_001")
    book.set_staged(export_id, BODY)
    book.set_file(export_id, "a.fits", "done", path="/data/a.fits", size=5760)
    book.set_file(export_id, "b.fits", "failed", reason="checksum")
    book.set_state(export_id, "incomplete", "files failed")
    book.set_staged(export_id, BODY)  # polled again on the next run
    files = {f.filename: f for f in book.files(export_id)}
    assert (files["a.fits"].state, files["a.fits"].path, files["a.fits"].size) == (
        "done",
        "/data/a.fits",
        5760,
    )
    assert (files["b.fits"].state, files["b.fits"].reason) == ("failed", "checksum")
    assert book.get(export_id).state == "incomplete"


def test_adopting_a_request_id_twice_gives_one_entry(book):
    first = book.adopt(SERVER, "JSOC_20140205_007")
    assert book.adopt(SERVER, "JSOC_20140205_007") == first
    entry = book.get(first)
    assert (entry.key, entry.state) == (None, "submitted")


def test_status_history_is_kept_in_order(book):
    export_id = book.begin(SERVER, PARAMS)
    book.add_status(export_id, 7, "User test@example.org has 1 pending export requests")
    book.add_status(export_id, 2, "submitted")
    book.add_status(export_id, 0, "")
    assert [status for _, status, _ in book.history(export_id)] == [7, 2, 0]


def test_age_counts_from_submission(tmp_path):
    now = [1000.0]
    with Ledger(tmp_path, clock=lambda: now[0]) as book:
        export_id = book.begin(SERVER, PARAMS)
        now[0] = 2000.0
        book.set_request_id(export_id, "JSOC_20140205_001")
        entry = book.get(export_id)
        assert entry.age(now=2000.0 + RETENTION_SECONDS) == RETENTION_SECONDS


def test_unknown_states_are_refused(book):
    export_id = book.begin(SERVER, PARAMS)
    with pytest.raises(ValueError, match="unknown export state"):
        book.set_state(export_id, "finished")
    with pytest.raises(ValueError, match="unknown file state"):
        book.set_file(export_id, "a.fits", "ok")


def test_two_connections_share_one_ledger(tmp_path):
    with Ledger(tmp_path) as one, Ledger(tmp_path) as two:
        export_id = one.begin(SERVER, PARAMS)
        two.set_request_id(export_id, "JSOC_20140205_001")
        assert one.get(export_id).requestid == "JSOC_20140205_001"


def test_database_file_may_be_named_directly(tmp_path):
    with Ledger(tmp_path / "my.sqlite") as book:
        assert book.path == tmp_path / "my.sqlite"


def test_many_openers_of_a_new_ledger_at_once_all_succeed(tmp_path):
    # Switching a new database to WAL takes a lock SQLite's busy timeout does not wait for.
    for attempt in range(20):
        folder = tmp_path / str(attempt)
        errors = []
        barrier = threading.Barrier(8)

        def open_and_write(folder=folder, errors=errors, barrier=barrier):
            barrier.wait()
            try:
                with Ledger(folder) as book:
                    book.begin(SERVER, PARAMS)
            except Exception as exc:  # collected for the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=open_and_write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        with Ledger(folder) as book:
            assert len(book.entries()) == 8
