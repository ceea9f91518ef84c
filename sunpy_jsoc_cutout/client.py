"""
`JSOCCutoutClient`: JSOC's server-side cutouts through `sunpy.net.Fido`.

Glue only: the attrs walker and `sunpy_jsoc_cutout.plan` decide what to ask, `jsoc` asks,
`retrieve` downloads and checks.
"""

import os
import string
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import TableAttribute
from parfive import Results
from sunpy import config as sunpy_config
from sunpy import log
from sunpy.net.attr import and_
from sunpy.net.base_client import BaseClient, QueryResponseTable, convert_row_to_table
from sunpy.util.exceptions import SunpyUserWarning

from sunpy_jsoc_cutout import attrs as cutout_attrs
from sunpy_jsoc_cutout import jsoc, plan, retrieve

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
            name = plan.series_name(params)
            info = plan.SeriesInfo.from_series_struct(name, connection.series_struct(name))
            plans.append(plan.make_plan(params, info))

        columns = defaultdict(list)
        planned = []
        for index, export in enumerate(plans):
            keys = [*export.series.primekeys, "T_OBS", "TELESCOP", "INSTRUME"]
            listing = connection.rs_list(export.record_set, keys)
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
            Replace files that are already on disk.
        **kwargs
            Fido's other keywords (``wait`` among them) are accepted and ignored.

        Returns
        -------
        `parfive.Results`
            The paths of the FITS files, with ``errors`` listing what could not be retrieved.
        """
        target = _target(path)
        selected = defaultdict(int)
        for row in query_results:
            selected[int(row["Export"])] += 1
        exports = [query_results.exports[index] for index in sorted(selected)]
        for index, export in zip(sorted(selected), exports, strict=True):
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

        results = Results()
        request_ids = list(query_results.request_ids)
        # One export at a time: JSOC allows one pending export per email address.
        for export, address in zip(exports, notify, strict=True):
            request_id = self._submit(connection, export, address)
            request_ids.append(request_id)
            finished = connection.wait_for_export(request_id)
            fetched = retrieve.fetch_export(
                finished,
                connection.export_urls(finished),
                target,
                progress=progress,
                overwrite=overwrite,
            )
            log.info(f"JSOC export {request_id}: {len(fetched)} files, {len(fetched.errors)} errors")
            for path_, url in zip(fetched, fetched.urls, strict=False):
                results.append(path=path_, url=url)
            for error in fetched.errors:
                results.add_error(error.filepath_partial, error.url, error.exception)
        query_results.request_ids = request_ids
        return results

    @staticmethod
    def _submit(connection, export, address):
        """Send one export request and return its request ID."""
        planned = export.plan
        answer = connection.exp_request(
            ds=planned.record_set,
            process=planned.process(export.t_start, export.t_stop),
            notify=address,
            method=planned.method(export.count),
            protocol=planned.protocol,
            filenamefmt=planned.filenamefmt,
            sizeratio=plan.plain_number(planned.size_ratio, 6),
            requestor=address.split("@")[0],
        )
        request_id = answer["requestid"]
        log.info(f"JSOC export {request_id} submitted for {planned.record_set}")
        return request_id


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
