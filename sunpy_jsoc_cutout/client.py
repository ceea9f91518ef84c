"""
`JSOCCutoutClient`: JSOC's server-side cutouts through `sunpy.net.Fido`.

Glue only: the attrs walker and `sunpy_jsoc_cutout.plan` decide what to ask, `jsoc` asks,
`exporter` runs the exports (with the request ledger), `retrieve` downloads and `verify`
checks.
"""

import os
import string
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table, TableAttribute
from sunpy import config as sunpy_config
from sunpy.net.attr import and_
from sunpy.net.base_client import BaseClient, QueryResponseTable, convert_row_to_table
from sunpy.util.exceptions import SunpyUserWarning

from sunpy_jsoc_cutout import attrs as cutout_attrs
from sunpy_jsoc_cutout import exporter, jsoc, ledger, plan

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
            if "WAVELNTH" not in keys:
                keys.append("WAVELNTH")  # aia.lev1 and HMI: the wavelength is not a prime key
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
        table["Size"].info.format = ".3f"
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
        # An address is needed now; JSOC is asked whether it is registered only before a new
        # submission, so a fetch the ledger can answer costs no round trip.
        notify = [_notify_address(export.plan) for export in exports]

        jobs = []
        for index, export, address in zip(indices, exports, notify, strict=True):
            trecs = None
            if selected[index] == export.count:
                trecs = [row["T_REC"] for row in query_results if int(row["Export"]) == index]
            jobs.extend(exporter.make_jobs(connection, export, address, trecs))

        with ledger.Ledger(exporter.state_dir()) as book:
            results, request_ids = exporter.Exporter(connection, book, target, progress, overwrite).run(jobs)
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
        if not exporter.REQUEST_ID.fullmatch(request_id):
            raise ValueError(
                f"request_id: {request_id!r} is not a JSOC request ID; they look like "
                "JSOC_20140205_123 (see the export's notification email or the web form)."
            )
        target = _target(path)
        connection = jsoc.JSOCConnection(self.server)
        with ledger.Ledger(exporter.state_dir()) as book:
            fetcher = exporter.Exporter(connection, book, target, progress, overwrite)
            export_id = book.adopt(connection.base_url, request_id)
            entry = book.get(export_id)
            if fetcher.have_all(entry):
                return fetcher.ledgered_results(entry)
            try:
                body = fetcher.wait(export_id, request_id)
            except jsoc.JSOCError as exc:
                exporter.record_failure(book, export_id, exc)
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
        with ledger.Ledger(exporter.state_dir()) as book:
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
        with ledger.Ledger(exporter.state_dir()) as book:
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


def _size(file):
    return -1 if file.size is None else file.size


def _utc(seconds):
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
