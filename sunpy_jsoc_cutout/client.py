"""
`JSOCCutoutClient`: JSOC's server-side cutouts through `sunpy.net.Fido`.

Glue only: the attrs walker and `sunpy_jsoc_cutout.plan` decide what to ask, `jsoc` asks,
`retrieve` downloads and checks.
"""

import os
import re
import string
import threading
import warnings
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import astropy.units as u
import numpy as np
from astropy.table import Table, TableAttribute
from parfive import Results
from sunpy import config as sunpy_config
from sunpy import log
from sunpy.extern.appdirs import AppDirs
from sunpy.net.attr import and_
from sunpy.net.base_client import BaseClient, QueryResponseTable, convert_row_to_table
from sunpy.util.exceptions import SunpyUserWarning

from sunpy_jsoc_cutout import attrs as cutout_attrs
from sunpy_jsoc_cutout import chunking, jsoc, ledger, plan, retrieve, verify

__all__ = ["JSOCCutoutClient", "JSOCCutoutResponse", "PlannedExport"]


class JSOCCutoutResponse(QueryResponseTable):
    """
    The records a cutout query found, with the cutout each will get.

    One row per record. ``exports`` holds one `PlannedExport` per query block (the ``Export``
    column says which), and ``request_ids`` the JSOC request IDs of the exports made by
    fetching this table.
    """

    exports = TableAttribute(default=[])
    request_ids = TableAttribute(default=[])
    hide_keys = ("Export",)
    size_column = "Size"


@dataclass(frozen=True)
class PlannedExport:
    """
    A query block's export plan with the records the search found for it.

    Parameters
    ----------
    plan : `~sunpy_jsoc_cutout.plan.ExportPlan`
    t_start, t_stop : str
        The first and last T_REC, as ``jsoc_info`` printed them (im_patch's limits).
    count : int
        The number of records.
    """

    plan: plan.ExportPlan
    t_start: str
    t_stop: str
    count: int


class JSOCCutoutClient(BaseClient):
    """
    Cutouts of SDO/AIA and SDO/HMI images made on JSOC's servers (``im_patch``).

    A query is this client's when it holds at least one ``a.jsoc_cutout`` attr. Each query
    block becomes one JSOC export, however many wavelengths it asks for; the exported FITS
    files are downloaded, extracted from JSOC's tar and checked before `Fido.fetch` returns
    them.

    Parameters
    ----------
    server : str, optional
        The base URL of the JSOC to talk to. Defaults to ``$SUNPY_JSOC_CUTOUT_SERVER``, read
        when a search or fetch starts, and then to ``http://jsoc.stanford.edu/``.

    Examples
    --------
    >>> import astropy.units as u
    >>> from astropy.coordinates import SkyCoord
    >>> from sunpy.net import Fido, attrs as a
    >>> import sunpy_jsoc_cutout
    >>> centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame="helioprojective",
    ...                   observer="earth", obstime="2014-02-05T08:00")
    >>> res = Fido.search(a.Time("2014-02-05T08:00", "2014-02-05T08:30"),
    ...                   a.jsoc.Series("aia.lev1_euv_12s"),
    ...                   a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA),
    ...                   a.Sample(1 * u.min),
    ...                   a.jsoc_cutout.Cutout(center=centre, width=500 * u.pix, height=500 * u.pix))
    ...                   # doctest: +SKIP
    >>> files = Fido.fetch(res, path="data/{file}")  # doctest: +SKIP
    """

    def __init__(self, server=None):
        self.server = server

    # --- Fido's questions -------------------------------------------------------------------

    @classmethod
    def _can_handle_query(cls, *query):
        # Ours only with a cutout attr in the block; sunpy's JSOCClient refuses such blocks
        # because it does not know these attrs, so no query reaches both clients.
        return any(isinstance(attr, cutout_attrs.CUTOUT_ATTRS) for attr in query)

    @classmethod
    def _attrs_module(cls):
        return "jsoc_cutout", "sunpy_jsoc_cutout.attrs"

    @property
    def info_url(self):
        return jsoc.server_url(self.server)

    # --- search -----------------------------------------------------------------------------

    def search(self, *query):
        """
        Find the records of a cutout query and plan one export per query block.

        Parameters
        ----------
        *query : `sunpy.net.attr.Attr`
            ``a.Time``, ``a.jsoc.Series``, the cutout attrs and optionally wavelengths,
            ``a.Sample``, ``a.jsoc.Segment`` and ``a.jsoc.Notify``.

        Returns
        -------
        JSOCCutoutResponse
        """
        blocks = cutout_attrs.walker.create(and_(*query))
        connection = jsoc.JSOCConnection(self.server)
        # Plan every block before asking JSOC for any records: a bad block fails early.
        plans = []
        for params in blocks:
            info = _series_info(connection, plan.series_name(params))
            region = plan.active_region(params)
            resolved = _resolve_region(connection, region) if region is not None else None
            plans.append(plan.make_plan(params, info, region=resolved))

        columns = defaultdict(list)
        planned = []
        for index, export in enumerate(plans):
            keys = [*export.series.primekeys, "T_OBS", "TELESCOP", "INSTRUME"]
            if export.series.channels and "WAVELNTH" not in keys:
                keys.append("WAVELNTH")  # aia.lev1: the channel is not a prime key
            listing = _without_junk(connection.rs_list(export.record_set, keys))
            trecs = listing.get(export.series.primekeys[0], [])
            count = len(trecs)
            if count:
                planned.append(PlannedExport(export, trecs[0], trecs[-1], count))
            else:
                planned.append(None)
            size = export.cutout_bytes * u.byte
            for row in range(count):
                trec = listing[export.series.primekeys[0]][row]
                columns["T_REC"].append(trec)
                columns["Wavelength"].append(_wavelength(listing, row))
                columns["Series"].append(export.series.name)
                columns["Telescope"].append(listing.get("TELESCOP", [""] * count)[row])
                columns["Instrument"].append(listing.get("INSTRUME", [""] * count)[row])
                columns["Cutout"].append(export.impatch.describe())
                columns["Size"].append(size.to_value(u.Mbyte))
                columns["Export"].append(index)
        table = JSOCCutoutResponse(
            {
                "T_REC": columns["T_REC"],
                "Series": columns["Series"],
                "Wavelength": u.Quantity(columns["Wavelength"], u.AA),
                "Telescope": columns["Telescope"],
                "Instrument": columns["Instrument"],
                "Cutout": columns["Cutout"],
                "Size": u.Quantity(columns["Size"], u.Mbyte),
                "Export": np.asarray(columns["Export"], dtype=int),
            },
            client=self,
        )
        table.exports = planned
        return table

    # --- fetch ------------------------------------------------------------------------------

    @convert_row_to_table
    def fetch(self, query_results, *, path=None, downloader=None, progress=True, overwrite=False, **kwargs):
        """
        Export, download, extract and check the cutouts of a search result.

        Every export is written to the request ledger (``$SUNPY_JSOC_CUTOUT_STATE``) before it
        is submitted, so an interrupted fetch carries on where it stopped when run again: a
        request ID JSOC still holds (7 days) is reused rather than submitted again, and files
        already retrieved and verified are not downloaded again. Exports are submitted one at a
        time per email address (JSOC allows one pending export per address) and are split to
        stay within JSOC's size and record-count limits; each export is downloaded while the
        next one is staged.

        Parameters
        ----------
        query_results : JSOCCutoutResponse
            What `search` returned, or a part of it.
        path : str or `pathlib.Path`, optional
            Where the files go; ``{file}`` stands for the file name. Defaults to sunpy's
            download directory.
        downloader : `parfive.Downloader`, optional
            Ignored: JSOC asks for one connection at a time, so the client runs its own
            downloader and returns finished files.
        progress : bool, optional
            Show parfive's progress bars.
        overwrite : bool, optional
            Replace files that are already on disk (and download them again).
        **kwargs
            Fido's other keywords (``wait`` among them) are accepted and ignored.

        Returns
        -------
        `parfive.Results`
            The paths of the FITS files, with ``errors`` listing what could not be retrieved:
            files that failed, and exports JSOC refused or failed (with JSOC's message and what
            to do next).
        """
        target = _target(path)
        selected = defaultdict(int)
        for row in query_results:
            selected[int(row["Export"])] += 1
        indices = sorted(selected)
        exports = [query_results.exports[index] for index in indices]
        for index, export in zip(indices, exports, strict=True):
            if selected[index] < export.count:
                warnings.warn(
                    "Only part of a query block was selected; JSOC exports whole record sets, so "
                    f"all {export.count} records of {export.plan.record_set} will be fetched.",
                    SunpyUserWarning,
                    stacklevel=3,
                )

        connection = jsoc.JSOCConnection(self.server)
        notify = [_notify_address(export.plan) for export in exports]
        for address in set(notify):
            status, message = connection.check_address(address)
            if status != 2:
                raise ValueError(
                    f"a.jsoc.Notify: JSOC does not accept {address!r} ({message}); register it at "
                    "http://jsoc.stanford.edu/ajax/register_email.html or set JSOC_EMAIL to a "
                    "registered address."
                )

        jobs = []
        for index, export, address in zip(indices, exports, notify, strict=True):
            trecs = None
            if selected[index] == export.count:
                trecs = [row["T_REC"] for row in query_results if int(row["Export"]) == index]
            jobs.extend(_jobs(connection, export, address, trecs))

        with ledger.Ledger(_state_dir()) as book:
            results, request_ids = _Fetcher(connection, book, target, progress, overwrite).run(jobs)
        query_results.request_ids = list(query_results.request_ids) + request_ids
        return results

    def fetch_request(self, request_id, *, path=None, progress=True, overwrite=False):
        """
        Finish an export made elsewhere (JSOC's web form, drms, another machine) by its request ID.

        The export is waited for if JSOC is still staging it, then downloaded, extracted and
        verified like the exports `fetch` makes, and recorded in the request ledger: calling
        this again costs no download.

        Parameters
        ----------
        request_id : str
            JSOC's request ID, ``JSOC_YYYYMMDD_NNN``.
        path : str or `pathlib.Path`, optional
            Where the files go; ``{file}`` stands for the file name. Defaults to sunpy's
            download directory.
        progress : bool, optional
            Show parfive's progress bars.
        overwrite : bool, optional
            Replace files that are already on disk.

        Returns
        -------
        `parfive.Results`
            The paths of the FITS files, with ``errors`` listing what could not be retrieved.

        Raises
        ------
        ValueError
            If ``request_id`` is not a JSOC request ID.
        sunpy_jsoc_cutout.jsoc.JSOCError
            If JSOC failed the export or no longer holds it (status 5 after 7 days), with
            JSOC's message and what to do next.
        """
        request_id = str(request_id).strip()
        if not _REQUEST_ID.fullmatch(request_id):
            raise ValueError(
                f"request_id: {request_id!r} is not a JSOC request ID; they look like "
                "JSOC_20140205_123 (see the export's notification email or the web form)."
            )
        target = _target(path)
        connection = jsoc.JSOCConnection(self.server)
        with ledger.Ledger(_state_dir()) as book:
            fetcher = _Fetcher(connection, book, target, progress, overwrite)
            export_id = book.adopt(connection.base_url, request_id)
            entry = book.get(export_id)
            if fetcher.have_all(entry):
                return fetcher.ledgered_results(entry)
            try:
                body = fetcher.wait(export_id, request_id)
            except jsoc.JSOCError as exc:
                _record_failure(book, export_id, exc)
                raise
            return fetcher.retrieve(export_id, body, None)

    def exports(self):
        """
        The exports in the request ledger, oldest first, with their state and files.

        Returns
        -------
        `astropy.table.Table`
            One row per export: ``Request ID``, ``State`` (``submitting``, ``submitted``,
            ``staged``, ``done``, ``incomplete``, ``failed``, ``expired``), ``Status`` (the
            last JSOC status seen), ``Submitted`` (UTC), ``Files`` (expected), ``Done``,
            ``Failed``, ``Record set``, ``Server`` and ``Error``.
        """
        rows = []
        with ledger.Ledger(_state_dir()) as book:
            for entry in book.entries():
                files = book.files(entry.id)
                history = book.history(entry.id)
                rows.append(
                    (
                        entry.requestid or "",
                        entry.state,
                        history[-1][1] if history and history[-1][1] is not None else -1,
                        _utc(entry.submitted or entry.created),
                        len(files),
                        sum(f.state == "done" for f in files),
                        sum(f.state == "failed" for f in files),
                        entry.ds or "",
                        entry.server,
                        entry.error or "",
                    )
                )
        names = ("Request ID", "State", "Status", "Submitted", "Files", "Done", "Failed", "Record set")
        names += ("Server", "Error")
        dtypes = (str, str, int, str, int, int, int, str, str, str)
        if not rows:
            return Table(names=names, dtype=dtypes)
        return Table(rows=rows, names=names, dtype=dtypes)

    def export_files(self, request_id):
        """
        The files of one ledgered export and the state of each.

        Parameters
        ----------
        request_id : str
            JSOC's request ID.

        Returns
        -------
        `astropy.table.Table`
            One row per file: ``File``, ``State`` (``expected``, ``done``, ``failed``), ``Path``,
            ``Size`` (bytes, -1 when unknown), ``Record`` and ``Reason``.

        Raises
        ------
        KeyError
            If the ledger has no export with this request ID for this client's server.
        """
        server = jsoc.server_url(self.server)
        with ledger.Ledger(_state_dir()) as book:
            entry = book.by_request_id(server, request_id)
            if entry is None:
                raise KeyError(f"the request ledger has no export {request_id} from {server}")
            files = book.files(entry.id)
        names = ("File", "State", "Path", "Size", "Record", "Reason")
        rows = [(f.filename, f.state, f.path or "", _size(f), f.record or "", f.reason or "") for f in files]
        dtypes = (str, str, str, int, str, str)
        if not rows:
            return Table(names=names, dtype=dtypes)
        return Table(rows=rows, names=names, dtype=dtypes)


def _series_info(connection, name):
    """The structure of a series, with JSOC's answer for an unknown series made a clear error."""
    try:
        body = connection.series_struct(name)
    except jsoc.JSOCError as error:
        if error.status is None:  # JSOC did not answer: not a question of the series name
            raise
        raise ValueError(
            f"a.jsoc.Series: JSOC does not know the series {name!r} ({error}). Cutouts work on AIA "
            "and HMI full-disk series such as aia.lev1_euv_12s, aia.lev1_uv_24s, aia.lev1, "
            "hmi.M_45s, hmi.Ic_45s or hmi.M_720s; http://jsoc.stanford.edu/JsocSeries_DataProducts_map.html "
            "lists them all."
        ) from None
    return plan.SeriesInfo.from_series_struct(name, body)


def _resolve_region(connection, region):
    """Look a NOAA region up in su_rsb.NOAA_ActiveRegions, as the JSOC export form does."""
    try:
        listing = connection.rs_list(plan.noaa_record_set(region), plan.NOAA_KEYS)
    except jsoc.JSOCError as error:
        if error.status is None:
            raise
        listing = {}  # JSOC found no such record: reported below with the region's number
    return plan.pick_active_region(region, listing)


def _without_junk(listing):
    """The listing without the junk CAMERA=-2147483648 records some HMI slots hold (jsoc-api.md 4)."""
    cameras = listing.get("CAMERA")
    if not cameras or plan.DRMS_MISSING_INT not in cameras:
        return listing
    keep = [row for row, camera in enumerate(cameras) if camera != plan.DRMS_MISSING_INT]
    return {name: [values[row] for row in keep if row < len(values)] for name, values in listing.items()}


def _wavelength(listing, row):
    values = listing.get("WAVELNTH")
    if not values:
        return np.nan
    try:
        return float(values[row])
    except ValueError:
        return np.nan


def _notify_address(export):
    address = export.notify or os.environ.get("JSOC_EMAIL")
    if not address:
        raise ValueError(
            "JSOC needs a notify address for an export: add a.jsoc.Notify('you@example.org') to "
            "the query or set the JSOC_EMAIL environment variable (the address must be registered "
            "at http://jsoc.stanford.edu/ajax/register_email.html)."
        )
    return plan.check_notify(address)


def _target(path):
    """A function from a file name to where that file goes, checked before any export."""
    if path is None:
        path = Path(sunpy_config.get("downloads", "download_dir")) / "{file}"
    template = str(Path(path).expanduser())
    if "{file}" not in template:
        template = str(Path(template) / "{file}")
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if fields - {"file"}:
        raise ValueError(
            f"path: {template!r} uses {', '.join(sorted(fields - {'file'}))}; JSOC cutout files "
            "can only be placed with {file}, e.g. path='data/{file}'."
        )
    return lambda filename: Path(template.format(file=filename))


# --- fetch machinery ------------------------------------------------------------------------

_REQUEST_ID = re.compile(r"JSOC_\d{8}_\d+(?:_X)?(?:_IN)?")
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


def _state_dir():
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


def _size(file):
    return -1 if file.size is None else file.size


def _utc(seconds):
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class _Job:
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


def _jobs(connection, export, address, trecs):
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
    jobs = []
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
        jobs.append(_Job(planned, params, chunk.count))
    return jobs


def _record_failure(book, export_id, exc):
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


class _Fetcher:
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
                            _record_failure(book, entry.id, exc)
                            raise
                        log.info(f"JSOC export {entry.requestid} has expired; submitting it again")
                        book.set_state(entry.id, "expired", str(exc))
                else:
                    book.set_state(entry.id, "expired", "older than JSOC's 7-day retention")
                entry = None
            # Write-ahead: the intent is on disk before the request is sent.
            export_id = entry.id if entry is not None else book.begin(self.server, job.params)
            export_id, requestid = self.submit(export_id, job.params)
            return export_id, requestid, self.wait(export_id, requestid)

    def submit(self, export_id, params):
        """Send an export request, waiting out other pending exports (status 7)."""
        book = self.book
        for round_ in range(_MAX_PENDING_ROUNDS):
            try:
                answer = self.connection.exp_request(**params)
            except jsoc.JSOCError as exc:
                book.add_status(export_id, exc.status, str(exc))
                if exc.status != 7:
                    _record_failure(book, export_id, exc)
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
                    _set_aside(dest, body)
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
            aside = _set_aside(Path(path_), body)
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


def _set_aside(path, body):
    """Move a file that failed a check out of its target name, into the partial folder."""
    requestid = re.sub(r"[^A-Za-z0-9._-]", "_", str(body.get("requestid") or "export"))
    folder = path.parent / retrieve.PARTIAL_DIR / requestid / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    aside = folder / path.name
    os.replace(path, aside)
    return aside
