"""
The request ledger: a durable record of every JSOC export and every file it should give.

One SQLite database (``ledger.sqlite`` in the state folder, ``$SUNPY_JSOC_CUTOUT_STATE``) holds

- ``exports``: one row per export, keyed by the fields JSOC deduplicates on (record set,
  process, protocol, method, filename format) and the server, with the request ID once it is
  known, the client's state of the export, the submit time and the status-0 body (index.json);
- ``history``: every JSOC status seen for an export, with JSOC's message;
- ``files``: the files an export is expected to give (the ``data`` rows of its index.json) and
  the state of each (``expected``, ``done``, ``failed``).

Every change is committed before the action it enables (the intent to submit is recorded before
the export request is sent, the request ID as soon as it is known), and the database runs in WAL
mode with full synchronisation, so a process killed at any point loses nothing: the next run
finds the request ID (or the intent to submit) and carries on.

Standard library only; every method opens a short transaction, so one `Ledger` may be used from
several threads and several processes may share the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EXPORT_STATES",
    "FILE_STATES",
    "LEDGER_NAME",
    "RETENTION_SECONDS",
    "STATE_ENV",
    "ExportEntry",
    "FileEntry",
    "Ledger",
    "export_key",
]

STATE_ENV = "SUNPY_JSOC_CUTOUT_STATE"
LEDGER_NAME = "ledger.sqlite"
#: JSOC keeps an export's files for 7 days.
RETENTION_SECONDS = 7 * 24 * 3600.0

#: submitting: the intent is recorded, the request ID is not yet known; submitted: JSOC has the
#: request; staged: JSOC reported status 0 and the files are listed; done: every file retrieved;
#: incomplete: some files failed; failed: JSOC refused or failed the export; expired: status 5
#: (or older than 7 days), a new export is needed.
EXPORT_STATES = ("submitting", "submitted", "staged", "done", "incomplete", "failed", "expired")
#: The states from which an export can still deliver files.
LIVE_STATES = ("submitting", "submitted", "staged", "done", "incomplete")
FILE_STATES = ("expected", "done", "failed")

_KEY_FIELDS = ("ds", "process", "protocol", "method", "filenamefmt")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server      TEXT NOT NULL,
    key         TEXT,               -- export_key(); NULL for exports adopted by request ID
    ds          TEXT,
    process     TEXT,
    protocol    TEXT,
    method      TEXT,
    filenamefmt TEXT,
    sizeratio   TEXT,
    notify      TEXT,
    requestid   TEXT,               -- NULL until JSOC has answered
    state       TEXT NOT NULL,
    created     REAL NOT NULL,      -- when the intent was recorded
    submitted   REAL,               -- when the request ID became known
    staged      REAL,
    updated     REAL NOT NULL,
    error       TEXT,
    status_body TEXT                -- the status-0 body (index.json) as JSON
);
CREATE INDEX IF NOT EXISTS exports_by_key ON exports (server, key);
CREATE INDEX IF NOT EXISTS exports_by_requestid ON exports (server, requestid);
CREATE TABLE IF NOT EXISTS history (
    export_id INTEGER NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    time      REAL NOT NULL,
    status    INTEGER,
    message   TEXT
);
CREATE INDEX IF NOT EXISTS history_by_export ON history (export_id);
CREATE TABLE IF NOT EXISTS files (
    export_id INTEGER NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    filename  TEXT NOT NULL,
    record    TEXT,
    state     TEXT NOT NULL,
    path      TEXT,
    size      INTEGER,
    reason    TEXT,
    updated   REAL NOT NULL,
    PRIMARY KEY (export_id, filename)
);
"""
_SCHEMA_VERSION = 1


def export_key(*, ds: str, process: str, protocol: str, method: str, filenamefmt: str) -> str:
    """
    The canonical key of an export: a hash of the fields JSOC deduplicates requests on.

    Parameters
    ----------
    ds, process, protocol, method, filenamefmt : str
        The export request's parameters.

    Returns
    -------
    str
        A hexadecimal SHA-256 digest.
    """
    text = json.dumps([ds, process, protocol, method, filenamefmt], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ExportEntry:
    """One export as the ledger knows it (a row of ``exports``)."""

    id: int
    server: str
    key: str | None
    ds: str | None
    process: str | None
    protocol: str | None
    method: str | None
    filenamefmt: str | None
    sizeratio: str | None
    notify: str | None
    requestid: str | None
    state: str
    created: float
    submitted: float | None
    staged: float | None
    updated: float
    error: str | None
    status_body: dict | None

    def age(self, now: float | None = None) -> float:
        """Seconds since the export was submitted (or the intent recorded)."""
        return (time.time() if now is None else now) - (self.submitted or self.created)


@dataclass(frozen=True)
class FileEntry:
    """One expected file of an export (a row of ``files``)."""

    export_id: int
    filename: str
    record: str | None
    state: str
    path: str | None
    size: int | None
    reason: str | None
    updated: float


def _entry(row: sqlite3.Row) -> ExportEntry:
    values = dict(row)
    body = values.pop("status_body")
    return ExportEntry(**values, status_body=json.loads(body) if body else None)


class Ledger:
    """
    The request ledger in one SQLite file.

    Parameters
    ----------
    path : str or pathlib.Path
        The state folder (the database is ``ledger.sqlite`` inside it) or the database file
        itself (a name ending in ``.sqlite`` or ``.db``). Folders are created as needed.
    clock : callable, optional
        Returns the time in seconds since the epoch (tests inject their own).
    """

    def __init__(self, path: str | os.PathLike, *, clock=time.time):
        path = Path(path).expanduser()
        if path.suffix not in (".sqlite", ".db"):
            path = path / LEDGER_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        self._lock = threading.RLock()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so each state
        # change is one committed transaction and concurrent writers queue on the busy timeout.
        self._db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit survives power loss too, not only a killed process.
        self._db.execute("PRAGMA synchronous=FULL")
        self._setup()

    def _setup(self) -> None:
        # Switching to WAL and creating the tables take locks that SQLite's busy timeout does
        # not always wait for (two processes opening a new ledger at once): retry a while.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                with self._lock:
                    if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        self._db.execute("PRAGMA journal_mode=WAL")
                    if self._db.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
                        # executescript commits on its own; the statements are idempotent.
                        self._db.executescript(_SCHEMA)
                        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __repr__(self) -> str:
        return f"<Ledger {self.path}>"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    # -- transactions ----------------------------------------------------------------------------

    class _Transaction:
        def __init__(self, ledger: Ledger):
            self.ledger = ledger

        def __enter__(self) -> sqlite3.Connection:
            self.ledger._lock.acquire()
            try:
                self.ledger._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.ledger._lock.release()
                raise
            return self.ledger._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.ledger._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.ledger._lock.release()

    def _write(self) -> Ledger._Transaction:
        return Ledger._Transaction(self)

    def _read(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- exports ---------------------------------------------------------------------------------

    def begin(self, server: str, params: Mapping[str, str]) -> int:
        """
        Record the intent to submit an export, before the request is sent.

        Parameters
        ----------
        server : str
            The JSOC's base URL.
        params : dict
            The request's ``ds``, ``process``, ``protocol``, ``method``, ``filenamefmt``,
            ``sizeratio`` and ``notify``.

        Returns
        -------
        int
            The ledger ID of the new export.
        """
        now = self.clock()
        key = export_key(**{name: params[name] for name in _KEY_FIELDS})
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO exports (server, key, ds, process, protocol, method, filenamefmt, sizeratio,"
                " notify, state, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'submitting', ?, ?)",
                (
                    server,
                    key,
                    params["ds"],
                    params["process"],
                    params["protocol"],
                    params["method"],
                    params["filenamefmt"],
                    str(params.get("sizeratio", "")),
                    params.get("notify"),
                    now,
                    now,
                ),
            )
            return cursor.lastrowid

    def adopt(self, server: str, requestid: str) -> int:
        """
        The ledger ID of an export known only by its request ID, adding it when new.

        Parameters
        ----------
        server : str
        requestid : str

        Returns
        -------
        int
        """
        now = self.clock()
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM exports WHERE server = ? AND requestid = ? ORDER BY id DESC LIMIT 1",
                (server, requestid),
            ).fetchone()
            if row is not None:
                return row["id"]
            cursor = db.execute(
                "INSERT INTO exports (server, requestid, state, created, submitted, updated)"
                " VALUES (?, ?, 'submitted', ?, ?, ?)",
                (server, requestid, now, now, now),
            )
            return cursor.lastrowid

    def set_request_id(self, export_id: int, requestid: str) -> int:
        """
        Record the request ID JSOC gave an export.

        When another ledger entry already holds that request ID (JSOC answered a duplicate
        request with the older export's ID), this entry is merged into it.

        Parameters
        ----------
        export_id : int
        requestid : str

        Returns
        -------
        int
            The ledger ID that now holds the request ID (``export_id`` or the older entry's).
        """
        now = self.clock()
        with self._write() as db:
            server = db.execute("SELECT server FROM exports WHERE id = ?", (export_id,)).fetchone()["server"]
            other = db.execute(
                "SELECT id FROM exports WHERE server = ? AND requestid = ? AND id != ? ORDER BY id LIMIT 1",
                (server, requestid, export_id),
            ).fetchone()
            if other is not None:
                db.execute("UPDATE history SET export_id = ? WHERE export_id = ?", (other["id"], export_id))
                db.execute("DELETE FROM exports WHERE id = ?", (export_id,))
                db.execute(
                    "UPDATE exports SET state = CASE WHEN state IN ('failed', 'expired') THEN 'submitted'"
                    " ELSE state END, updated = ? WHERE id = ?",
                    (now, other["id"]),
                )
                return other["id"]
            db.execute(
                "UPDATE exports SET requestid = ?, state = 'submitted', submitted = ?, updated = ?,"
                " error = NULL WHERE id = ?",
                (requestid, now, now, export_id),
            )
            return export_id

    def add_status(self, export_id: int, status: int | None, message: str = "") -> None:
        """
        Append a JSOC status (and its message) to an export's history.

        Parameters
        ----------
        export_id : int
        status : int or None
        message : str
        """
        with self._write() as db:
            db.execute(
                "INSERT INTO history (export_id, time, status, message) VALUES (?, ?, ?, ?)",
                (export_id, self.clock(), status, message),
            )

    def set_state(self, export_id: int, state: str, error: str | None = None) -> None:
        """
        Change an export's state.

        Parameters
        ----------
        export_id : int
        state : str
            One of `EXPORT_STATES`.
        error : str, optional
            Why (for ``failed``, ``expired`` and ``incomplete``).
        """
        if state not in EXPORT_STATES:
            raise ValueError(f"unknown export state {state!r}; use one of {', '.join(EXPORT_STATES)}")
        with self._write() as db:
            db.execute(
                "UPDATE exports SET state = ?, error = ?, updated = ? WHERE id = ?",
                (state, error, self.clock(), export_id),
            )

    def set_staged(self, export_id: int, status_body: Mapping) -> None:
        """
        Record an export's status-0 body and the files its ``data`` rows list.

        Files already recorded keep their state.

        Parameters
        ----------
        export_id : int
        status_body : dict
            The export's index.json.
        """
        now = self.clock()
        rows = []
        for row in status_body.get("data") or ():
            if not isinstance(row, Mapping):
                continue
            filename = row.get("filename")
            record = str(row.get("record", ""))
            if not isinstance(filename, str) or not filename.strip() or filename == "NoDataFile":
                continue
            if record.startswith("warning="):
                continue
            rows.append((export_id, filename.strip().rsplit("/", 1)[-1], record, now))
        with self._write() as db:
            db.execute(
                "UPDATE exports SET state = CASE WHEN state IN ('done', 'incomplete') THEN state"
                " ELSE 'staged' END, staged = COALESCE(staged, ?), status_body = ?, updated = ?"
                " WHERE id = ?",
                (now, json.dumps(dict(status_body)), now, export_id),
            )
            db.executemany(
                "INSERT OR IGNORE INTO files (export_id, filename, record, state, updated)"
                " VALUES (?, ?, ?, 'expected', ?)",
                rows,
            )

    def set_file(
        self,
        export_id: int,
        filename: str,
        state: str,
        *,
        path: str | os.PathLike | None = None,
        size: int | None = None,
        reason: str | None = None,
    ) -> None:
        """
        Record the state of one file of an export.

        Parameters
        ----------
        export_id : int
        filename : str
            The file's name in the export.
        state : str
            One of `FILE_STATES`.
        path : str or pathlib.Path, optional
            Where the file is (``done``).
        size : int, optional
            Its size in bytes (``done``).
        reason : str, optional
            Why it failed (``failed``).
        """
        if state not in FILE_STATES:
            raise ValueError(f"unknown file state {state!r}; use one of {', '.join(FILE_STATES)}")
        with self._write() as db:
            db.execute(
                "INSERT INTO files (export_id, filename, state, path, size, reason, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (export_id, filename) DO UPDATE SET"
                " state = excluded.state, path = excluded.path, size = excluded.size,"
                " reason = excluded.reason, updated = excluded.updated",
                (
                    export_id,
                    filename,
                    state,
                    None if path is None else str(path),
                    size,
                    reason,
                    self.clock(),
                ),
            )

    # -- queries ---------------------------------------------------------------------------------

    def get(self, export_id: int) -> ExportEntry:
        """
        One export by its ledger ID.

        Raises
        ------
        KeyError
            If there is no such export.
        """
        rows = self._read("SELECT * FROM exports WHERE id = ?", (export_id,))
        if not rows:
            raise KeyError(export_id)
        return _entry(rows[0])

    def find(self, server: str, key: str) -> ExportEntry | None:
        """
        The newest export of a key on a server that can still deliver files, or None.

        Parameters
        ----------
        server : str
        key : str
            An `export_key`.

        Returns
        -------
        ExportEntry or None
        """
        marks = ",".join("?" * len(LIVE_STATES))
        rows = self._read(
            f"SELECT * FROM exports WHERE server = ? AND key = ? AND state IN ({marks})"
            " ORDER BY (requestid IS NULL), id DESC LIMIT 1",
            (server, key, *LIVE_STATES),
        )
        return _entry(rows[0]) if rows else None

    def by_request_id(self, server: str, requestid: str) -> ExportEntry | None:
        """
        The export with this request ID on this server, or None.

        Parameters
        ----------
        server : str
        requestid : str

        Returns
        -------
        ExportEntry or None
        """
        rows = self._read(
            "SELECT * FROM exports WHERE server = ? AND requestid = ? ORDER BY id DESC LIMIT 1",
            (server, requestid),
        )
        return _entry(rows[0]) if rows else None

    def entries(self) -> list[ExportEntry]:
        """Every export, oldest first."""
        return [_entry(row) for row in self._read("SELECT * FROM exports ORDER BY id")]

    def files(self, export_id: int) -> list[FileEntry]:
        """The expected files of an export, in the order the export listed them."""
        rows = self._read("SELECT * FROM files WHERE export_id = ? ORDER BY rowid", (export_id,))
        return [FileEntry(**dict(row)) for row in rows]

    def history(self, export_id: int) -> list[tuple[float, int | None, str]]:
        """The JSOC statuses seen for an export: (time, status, message), oldest first."""
        rows = self._read(
            "SELECT time, status, message FROM history WHERE export_id = ? ORDER BY rowid", (export_id,)
        )
        return [(row["time"], row["status"], row["message"]) for row in rows]
