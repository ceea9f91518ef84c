"""
Running export jobs: the request ledger first, then JSOC.

An `Exporter` takes the export requests a fetch needs (`make_jobs`), reuses what the request
ledger already holds, submits the rest one at a time per email address (waiting out JSOC's
status 7), polls each until staged and retrieves it in a worker thread while the next one
stages. Every step is written to the ledger before the step it enables, so a run killed at
any point is picked up by the next.
"""

import gc
import os
import re
import threading
import warnings
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from parfive import Results
from sunpy import log
from sunpy.extern.appdirs import AppDirs
from sunpy.util.exceptions import SunpyUserWarning

from sunpy_jsoc_cutout import chunking, jsoc, ledger, plan, retrieve, verify

__all__ = ["REQUEST_ID", "Exporter", "Job", "make_jobs", "record_failure", "state_dir"]

REQUEST_ID = re.compile(r"JSOC_\d{8}_\d+(?:_X)?(?:_IN)?")
# How often a submission may be answered with status 7 (each time after waiting for the pending
# export JSOC named) before giving up.
_MAX_PENDING_ROUNDS = 100
# Polls of someone else's pending export: patient, it is not ours to hurry.
_PENDING_POLL = (2, 4, 8, 15, 30)
# Statuses of an export JSOC is still working on (a wait that timed out, not a failure).
_STILL_PENDING = (1, 2, 6, 7, 12)
# Waits when JSOC says "too many requests" without naming the pending exports.
_BUSY_WAIT = (5, 10, 20, 30, 60)

# JSOC allows one pending export per email address: within this process, exports for one
# address are submitted and staged one at a time (other processes are handled through status 7).
_EMAIL_LOCKS = defaultdict(threading.Lock)
_EMAIL_LOCKS_GUARD = threading.Lock()


def _email_lock(address):
    with _EMAIL_LOCKS_GUARD:
        return _EMAIL_LOCKS[address.lower()]


def state_dir():
    """
    The folder of the request ledger.

    ``$SUNPY_JSOC_CUTOUT_STATE`` when set, else ``jsoc_cutout`` in sunpy's user configuration
    folder (``$SUNPY_CONFIGDIR`` or the platform's, e.g. ``~/.config/sunpy``).

    Returns
    -------
    pathlib.Path
    """
    folder = os.environ.get(ledger.STATE_ENV)
    if folder:
        return Path(folder).expanduser()
    config = os.environ.get("SUNPY_CONFIGDIR") or AppDirs("sunpy", "sunpy").user_config_dir
    return Path(config).expanduser() / "jsoc_cutout"


@dataclass(frozen=True)
class Job:
    """One export request to make: the plan it comes from and the request's parameters."""

    plan: plan.ExportPlan
    params: dict
    count: int

    @property
    def key(self):
        return ledger.export_key(**{name: self.params[name] for name in _KEY_FIELDS})


_KEY_FIELDS = ("ds", "process", "protocol", "method", "filenamefmt")


def _segment_count(record_set):
    match = re.search(r"\{([^}]*)\}\s*$", record_set)
    return len([s for s in match.group(1).split(",") if s.strip()]) if match else 1


def make_jobs(connection, export, address, trecs):
    """Split one planned export into requests within JSOC's limits (see `chunking`)."""
    planned = export.plan
    limit = chunking.max_records(
        planned.series.instrument, planned.size_ratio, _segment_count(planned.record_set)
    )
    pieces = [(planned.record_set, chunking.Chunk(export.t_start, export.t_stop, export.count))]
    if export.count > limit:
        if trecs is None or len(trecs) != export.count:
            trecs = connection.rs_list(planned.record_set, [planned.series.primekeys[0]]).get(
                planned.series.primekeys[0], []
            )
        chunks = chunking.split(trecs, limit)
        try:
            pieces = [(chunking.chunk_record_set(planned.record_set, c), c) for c in chunks]
        except ValueError as exc:
            warnings.warn(
                f"{exc}; the {export.count} records go in one export, which JSOC may refuse as too "
                f"large (more than {limit} records).",
                SunpyUserWarning,
                stacklevel=4,
            )
        else:
            log.info(f"{planned.record_set}: {export.count} records split into {len(pieces)} exports")
    found = []
    for ds, chunk in pieces:
        params = {
            "ds": ds,
            "process": planned.process(chunk.t_start, chunk.t_stop),
            "notify": address,
            "method": planned.method(chunk.count),
            "protocol": planned.protocol,
            "filenamefmt": planned.filenamefmt,
            "sizeratio": plan.plain_number(planned.size_ratio, 6),
            "requestor": address.split("@")[0],
        }
        found.append(Job(planned, params, chunk.count))
    return found


def record_failure(book, export_id, exc):
    """Mark an export failed (or expired) when JSOC said so; transport failures change nothing."""
    if exc.status == 5:
        book.set_state(export_id, "expired", str(exc))
    elif exc.status is not None and exc.status not in _STILL_PENDING:
        book.set_state(export_id, "failed", str(exc))


def _check_cutouts(planned, paths):
    """
    The cutout verification hook: ``[(path, reason)]`` for the files that are not the cutouts
    the plan asked for (box, tracking, registration, crop, centre; `verify`).
    """
    if planned is None or not paths:
        return []
    # Every path given here has passed retrieve.verify_fits already.
    return verify.check_cutouts(paths, verify.expectation_from_plan(planned), checksum=False)


class Exporter:
    """
    Runs export jobs: ledger first, then JSOC; downloads in a worker thread while the next
    export stages.
    """

    def __init__(self, connection, book, target, progress, overwrite):
        self.connection = connection
        self.book = book
        self.server = connection.base_url
        self.target = target
        self.progress = progress
        self.overwrite = overwrite

    # -- the pipeline ----------------------------------------------------------------------------

    def run(self, jobs):
        """Returns (parfive.Results, request IDs)."""
        # parfive's Downloader.download(), which Fido.fetch calls after every client, leaves its
        # event loop unclosed in a reference cycle. Were the collector to free it in the download
        # thread, the loop's __del__ would fail to remove its signal handlers there and print an
        # error; collecting here, in the calling thread, frees loops of earlier fetches safely.
        gc.collect()
        outcomes = []
        request_ids = []
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jsoc-cutout-download")
        try:
            for job in jobs:
                try:
                    export_id, requestid, body = self.stage(job)
                except jsoc.JSOCError as exc:
                    log.warning(f"JSOC export of {job.params['ds']} failed: {exc}")
                    failed = Results()
                    failed.add_error(job.params["ds"], exc.requestid or self.server, exc)
                    outcomes.append(failed)
                    continue
                request_ids.append(requestid)
                if body is None:
                    log.info(f"JSOC export {requestid}: every file already retrieved")
                    outcomes.append(self.ledgered_results(self.book.get(export_id)))
                    continue
                # Download this export while the next one is submitted and staged.
                outcomes.append(pool.submit(self.retrieve, export_id, body, job.plan))
            results = Results()
            for outcome in outcomes:
                got = outcome.result() if isinstance(outcome, Future) else outcome
                for path_, url in zip(got, got.urls, strict=False):
                    results.append(path=path_, url=url)
                for error in got.errors:
                    results.add_error(error.filepath_partial, error.url, error.exception)
        finally:
            # On an interrupt, downloads not yet started are dropped (the ledger has them for
            # the next run); the one under way finishes, so no file is left half-published.
            pool.shutdown(wait=True, cancel_futures=True)
        return results, request_ids

    def stage(self, job):
        """
        The ledger ID, request ID and status-0 body of a job's export, submitting it if need be.

        The body is None when the ledger shows every file of the export retrieved.
        """
        book = self.book
        entry = book.find(self.server, job.key)
        if entry is not None and self.have_all(entry):
            return entry.id, entry.requestid, None
        with _email_lock(job.params["notify"]):
            if entry is not None and entry.requestid is not None:
                if entry.age() < ledger.RETENTION_SECONDS:
                    try:
                        return entry.id, entry.requestid, self.wait(entry.id, entry.requestid)
                    except jsoc.JSOCError as exc:
                        if exc.status != 5:
                            record_failure(book, entry.id, exc)
                            raise
                        log.info(f"JSOC export {entry.requestid} has expired; submitting it again")
                        book.set_state(entry.id, "expired", str(exc))
                else:
                    book.set_state(entry.id, "expired", "older than JSOC's 7-day retention")
                entry = None
            self.check_address(job.params["notify"])
            # Write-ahead: the intent is on disk before the request is sent.
            export_id = entry.id if entry is not None else book.begin(self.server, job.params)
            export_id, requestid = self.submit(export_id, job.params)
            return export_id, requestid, self.wait(export_id, requestid)

    def check_address(self, address):
        """Refuse an address JSOC has not registered, before anything is submitted for it."""
        status, message = self.connection.check_address(address)  # cached per connection
        if status != 2:
            raise ValueError(
                f"a.jsoc.Notify: JSOC does not accept {address!r} ({message}); register it at "
                f"{jsoc.REGISTER_URL} or set JSOC_EMAIL to a registered address."
            )

    def submit(self, export_id, params):
        """Send an export request, waiting out other pending exports (status 7)."""
        book = self.book
        for round_ in range(_MAX_PENDING_ROUNDS):
            try:
                answer = self.connection.exp_request(**params)
            except jsoc.JSOCError as exc:
                book.add_status(export_id, exc.status, str(exc))
                if exc.status != 7:
                    record_failure(book, export_id, exc)
                    raise
                self.wait_for_pending(exc.pending, round_)
                continue
            requestid = answer["requestid"]
            # Recorded before anything else happens: a kill from here on loses nothing.
            export_id = book.set_request_id(export_id, requestid)
            book.add_status(export_id, answer.get("status"), "submitted")
            log.info(f"JSOC export {requestid} submitted for {params['ds']}")
            return export_id, requestid
        raise jsoc.JSOCError(
            f"JSOC kept answering that {params['notify']} has pending exports after "
            f"{_MAX_PENDING_ROUNDS} waits; let them finish and fetch again.",
            status=7,
        )

    def wait_for_pending(self, pending, round_):
        """
        Wait until the exports JSOC named as pending have finished (status 7).

        Resubmitting afterwards adopts a pending export that was this very request (an earlier
        attempt whose answer was lost, or a killed run): JSOC answers a request identical to one
        of the last 24 h with that export's request ID.
        """
        if not pending:
            delay = _BUSY_WAIT[min(round_, len(_BUSY_WAIT) - 1)]
            log.info(f"JSOC has too many pending exports for this address; waiting {delay} s")
            self.connection.sleep(delay)
            return
        for requestid in pending:
            log.info(f"JSOC export {requestid} is pending for this address; waiting for it to finish")
            ours = self.book.by_request_id(self.server, requestid)
            try:
                body = self.connection.wait_for_export(requestid, poll_interval=_PENDING_POLL)
            except jsoc.JSOCError as exc:
                # Finished one way or another: no longer pending, which is all that matters here.
                if ours is not None:
                    self.book.add_status(ours.id, exc.status, str(exc))
                continue
            if ours is not None:
                self.book.add_status(ours.id, 0, "")
                self.book.set_staged(ours.id, body)

    def wait(self, export_id, requestid):
        """Poll an export until staged; record its status and files."""
        try:
            body = self.connection.wait_for_export(requestid)
        except jsoc.JSOCError as exc:
            self.book.add_status(export_id, exc.status, str(exc))
            raise
        self.book.add_status(export_id, 0, "")
        self.book.set_staged(export_id, body)
        return body

    # -- files -------------------------------------------------------------------------------

    def have_all(self, entry):
        """Whether the ledger shows every file of an export retrieved, verified and in place."""
        if self.overwrite or entry.status_body is None:
            return False
        return all(self._trusted(f) for f in self.book.files(entry.id))

    def _trusted(self, file):
        dest = Path(self.target(file.filename))
        if file.state != "done" or file.path != str(dest):
            return False
        try:
            return dest.stat().st_size == file.size
        except OSError:
            return False

    def _url(self, body, filename):
        tar = body.get("tarfile") if body else None
        if isinstance(tar, str) and tar.strip():
            return self.connection.file_url(tar.strip())
        directory = str((body or {}).get("dir") or "").rstrip("/")
        return self.connection.file_url(f"{directory}/{filename}")

    def ledgered_results(self, entry):
        """Results from the ledger alone (no download)."""
        results = Results()
        for file in self.book.files(entry.id):
            results.append(path=file.path, url=self._url(entry.status_body, file.filename))
        return results

    def retrieve(self, export_id, body, planned):
        """
        Download what is missing of a staged export, verify it and record each file's state.

        Returns parfive.Results in the order the export lists its files.
        """
        book = self.book
        files = book.files(export_id)
        by_dest = {str(Path(self.target(f.filename))): f.filename for f in files}
        good = {}  # filename -> path, in place and verified
        fresh = {}  # filename -> path, still to go through the cutout checks
        missing = []
        for file in files:
            dest = Path(self.target(file.filename))
            if self.overwrite:
                missing.append(file.filename)
            elif self._trusted(file):
                good[file.filename] = str(dest)
            elif dest.exists():
                # In place but not yet recorded (a run killed after the move): check it again.
                reason = retrieve.verify_fits(dest)
                if reason is None:
                    fresh[file.filename] = str(dest)
                else:
                    retrieve.set_aside(dest, body.get("requestid"))
                    missing.append(file.filename)
            else:
                missing.append(file.filename)

        results = Results()
        if missing:
            urls = self.connection.export_urls(body)
            is_tar = bool(str(body.get("tarfile") or "").strip())
            if not is_tar:
                wanted = set(missing)
                urls = [url for url in urls if _retrieve_name(url) in wanted]
            fetched = retrieve.fetch_export(
                body, urls, self.target, progress=self.progress, overwrite=self.overwrite
            )
            for path_ in fetched:
                name = by_dest.get(str(path_))
                if name is not None and name not in good:
                    fresh[name] = str(path_)
            for error in fetched.errors:
                name = by_dest.get(str(error.filepath_partial), str(error.filepath_partial))
                if any(f.filename == name for f in files):
                    book.set_file(export_id, name, "failed", reason=str(error.exception))
                results.add_error(error.filepath_partial, error.url, error.exception)

        rejected = dict(_check_cutouts(planned, list(fresh.values())))
        for name, path_ in list(fresh.items()):
            reason = rejected.get(path_)
            if reason is None:
                continue
            del fresh[name]
            aside = retrieve.set_aside(Path(path_), body.get("requestid"))
            book.set_file(export_id, name, "failed", reason=f"{reason} (kept as {aside})")
            results.add_error(
                path_,
                self._url(body, name),
                retrieve.RetrieveError(f"{name}: not the cutout asked for: {reason} (kept as {aside})"),
            )
        for name, path_ in fresh.items():
            book.set_file(export_id, name, "done", path=path_, size=Path(path_).stat().st_size)
            good[name] = path_

        for file in files:
            if file.filename in good:
                results.append(path=good[file.filename], url=self._url(body, file.filename))
        requestid = body.get("requestid")
        complete = all(f.filename in good for f in files)
        book.set_state(export_id, "done" if complete else "incomplete", None if complete else "files failed")
        log.info(f"JSOC export {requestid}: {len(results)} files, {len(results.errors)} errors")
        return results


def _retrieve_name(url):
    """The file name at the end of a download URL."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])
