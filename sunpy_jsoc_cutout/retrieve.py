"""
Retrieval of staged JSOC exports: download, safe tar extraction, FITS verification and atomic
publication of the files.

This is the only module of the package that writes data files. Files are downloaded into a
private partial folder beside their targets (``<target dir>/.jsoc-cutout-partial/<request ID>/``)
and only moved to their final names once they have been verified, so a file at its final name
is always complete (parfive writes straight to the final name and would leave truncated files
there after a crash).

parfive does the normal downloads (one connection, progress bars). It has neither retries nor
resume, so both are added here: failed downloads are classified, and transport errors,
timeouts, HTTP 5xx, 408 and 429 are tried again after a capped exponential backoff with jitter
(honouring ``Retry-After``); a file that fails verification is downloaded again a couple of
times (it may have been damaged in transit). A partial file left in the partial folder by an
interrupted run (kill -9, power loss) is continued with ``Range: bytes=<size>-``, accepting only
a 206 whose ``Content-Range`` starts at that size, and otherwise downloaded again from the start.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import logging
import os
import re
import shutil
import tarfile
import time
import warnings
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import parfive
from astropy.io import fits
from parfive.utils import FailedDownload, MultiPartDownloadError

from .jsoc import RETRY_HTTP, USER_AGENT, backoff_delay, parse_retry_after

__all__ = [
    "DOWNLOAD_RETRIES",
    "PARTIAL_DIR",
    "VERIFY_RETRIES",
    "RetrieveError",
    "fetch_export",
    "set_aside",
    "verify_fits",
]

log = logging.getLogger(__name__)

PARTIAL_DIR = ".jsoc-cutout-partial"
CHUNKSIZE = 65536
#: Retries of a download after transport errors, timeouts, 5xx, 408 and 429.
DOWNLOAD_RETRIES = 5
#: Downloads again of a file (or tar) whose content failed verification.
VERIFY_RETRIES = 2
#: (connect, read) timeouts of downloads, in seconds; no total limit (a big tar takes hours).
DOWNLOAD_TIMEOUT = (30.0, 120.0)
# JSOC's tars are flat ("./name"); anything else is not something JSOC writes.
_SAFE_MEMBER = re.compile(r"(\./)?[A-Za-z0-9._:+-]+")
_FITS_SUFFIXES = (".fits", ".fit", ".fts")
# Non-FITS files JSOC puts into every tar (index.json, index.txt, index.html, the request's
# scripts): skipped without a word.
_EXPECTED_EXTRAS = re.compile(
    r"index\.(json|txt|html?)|.*\.(drmsrun|qsub|sh|csh|txt|json|html?|log|keywords\.txt)|README.*", re.I
)
_CHECKSUM_WARNING = re.compile(r"(checksum|datasum) verification failed|truncated", re.I)


class RetrieveError(Exception):
    """Why one file of an export could not be retrieved (found in ``Results.errors``)."""


def _is_fits_name(name: str) -> bool:
    return name.lower().endswith(_FITS_SUFFIXES)


def _safe_name(name: str) -> str | None:
    """The plain file name for a flat, safe member/file name, else None."""
    if not _SAFE_MEMBER.fullmatch(name):
        return None
    base = name.removeprefix("./")
    return base if base not in {"", ".", ".."} else None


def verify_fits(path: Path) -> str | None:
    """
    Check that a file is a complete, readable FITS file.

    ``CHECKSUM``/``DATASUM`` are verified for every HDU where present (absent keywords make a
    file unverifiable, not bad); the data of every HDU must be readable.

    Parameters
    ----------
    path : pathlib.Path

    Returns
    -------
    str or None
        None when the file is good, else the reason it is not.
    """
    problems: list[str] = []
    # astropy reports checksum failures and truncation only as warnings: record them and turn
    # them into reasons.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # disable_image_compression: checksums of a tile-compressed HDU cover the stored
            # table, which the decompressed view cannot verify.
            with fits.open(
                path, checksum=True, lazy_load_hdus=False, memmap=False, disable_image_compression=True
            ) as hdul:
                if len(hdul) == 0:
                    return "no HDUs in file"
                for index, hdu in enumerate(hdul):
                    try:
                        _ = hdu.data  # memmap=False: this reads all of it
                    except Exception as exc:  # any failure to read the data is a bad file
                        problems.append(f"data of HDU {index} unreadable ({type(exc).__name__}: {exc})")
        except Exception as exc:  # astropy raises a variety of errors for a broken file
            return f"not a readable FITS file ({type(exc).__name__}: {exc})"
    for warning in caught:
        message = " ".join(str(warning.message).split())
        if _CHECKSUM_WARNING.search(message):
            problems.append(message)
    return "; ".join(dict.fromkeys(problems)) or None


def _innermost(exc: BaseException) -> object:
    # parfive wraps the cause in FailedDownload, sometimes twice; an HTTP error's cause is the
    # aiohttp.ClientResponse itself, or a MultiPartDownloadError holding it (ranged downloads).
    seen = 0
    while isinstance(exc, (FailedDownload, MultiPartDownloadError)) and seen < 5:
        exc = exc.exception if isinstance(exc, FailedDownload) else exc.response
        seen += 1
    return exc


def _classify(exc: BaseException) -> tuple[str, bool, float | None]:
    """(reason, transient, Retry-After seconds) of a parfive download error."""
    inner = _innermost(exc)
    status = getattr(inner, "status", None)
    if isinstance(inner, (aiohttp.ClientResponse, aiohttp.ClientResponseError)) and isinstance(status, int):
        reason = f"HTTP {status} {getattr(inner, 'reason', None) or getattr(inner, 'message', '') or ''}"
        headers = getattr(inner, "headers", None) or {}
        transient = status in RETRY_HTTP or status < 400
        return reason.strip(), transient, parse_retry_after(headers.get("Retry-After"))
    if isinstance(inner, (aiohttp.ClientError, TimeoutError, OSError)):
        return f"{type(inner).__name__}: {inner}".rstrip(": "), True, None
    return f"{type(inner).__name__}: {inner}", False, None


def _publish(source: Path, dest: Path) -> None:
    """Move a verified file to its final name atomically (also across file systems)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        staging = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(source, staging)
        os.replace(staging, dest)
        source.unlink()


def _url_filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _listed_files(status_body: Mapping) -> list[str]:
    names = []
    for row in status_body.get("data") or ():
        filename = row.get("filename") if isinstance(row, Mapping) else None
        if isinstance(filename, str) and filename.strip() and filename != "NoDataFile":
            names.append(filename.strip().rsplit("/", 1)[-1])
    return names


class _Extraction:
    """The allow-list filter for JSOC tars, layered on tarfile's "data" filter."""

    def __init__(self):
        self.rejected: list[tuple[str, str]] = []  # (member name, reason)

    def check(self, member: tarfile.TarInfo) -> str | None:
        """The member's plain file name if it is to be extracted, else None."""
        name = member.name
        if member.isdir() and name.rstrip("/") in {".", ""}:
            return None
        if member.issym() or member.islnk():
            self.rejected.append((name, f"link to {member.linkname!r} (not extracted)"))
            return None
        if member.isdev() or member.isfifo():
            self.rejected.append((name, "device or pipe (not extracted)"))
            return None
        if not member.isreg():
            self.rejected.append((name, "not a regular file (not extracted)"))
            return None
        base = _safe_name(name)
        if base is None:
            self.rejected.append((name, "unsafe path (outside the export's flat folder; not extracted)"))
            return None
        if not _is_fits_name(base):
            if not _EXPECTED_EXTRAS.fullmatch(base):
                self.rejected.append((name, "unexpected non-FITS file (not extracted)"))
            return None
        return base

    def __call__(self, member: tarfile.TarInfo, dest_path: str) -> tarfile.TarInfo | None:
        if self.check(member) is None:
            return None
        try:
            return tarfile.data_filter(member, dest_path)
        except tarfile.FilterError as exc:
            self.rejected.append((member.name, f"refused by tarfile's data filter ({exc})"))
            return None


def _extract_tar(tar_path: Path, dest: Path) -> tuple[list[str], list[tuple[str, str]], str | None]:
    """
    Extract the plain FITS members of a tar into ``dest``.

    Returns the extracted file names, the rejected members with reasons, and the reason the tar
    could not be read to its end (or None).
    """
    dest.mkdir(parents=True, exist_ok=True)
    extraction = _Extraction()
    extracted: list[str] = []
    failure = None
    current = None
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            for member in tar:
                current = None
                filtered = extraction(member, str(dest))
                if filtered is None:
                    continue
                current = dest / filtered.name.removeprefix("./")
                # The member has been filtered already; "fully_trusted" avoids filtering twice.
                tar.extract(filtered, dest, set_attrs=False, filter="fully_trusted")
                extracted.append(current.name)
                current = None
    except (tarfile.TarError, EOFError, OSError) as exc:
        failure = f"the tar file is damaged or truncated ({type(exc).__name__}: {exc})"
        if current is not None:
            current.unlink(missing_ok=True)
    return list(dict.fromkeys(extracted)), extraction.rejected, failure


def _downloader(progress: bool, timeout: tuple[float, float]) -> parfive.Downloader:
    config = parfive.SessionConfig(
        # parfive's default has no connect timeout; total=None because a big tar may take hours.
        timeouts=aiohttp.ClientTimeout(total=None, sock_connect=timeout[0], sock_read=timeout[1]),
        headers={"User-Agent": USER_AGENT},
        file_progress=progress,
    )
    # JSOC asked for one connection and no split downloads.
    return parfive.Downloader(max_conn=1, max_splits=1, progress=progress, overwrite=True, config=config)


def _run_coroutine(make: Callable[[], Coroutine]):
    """Run a coroutine to its end, also from inside a running event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _run(downloader: parfive.Downloader) -> parfive.Results:
    """Run a download; `asyncio.run` closes its event loop, ``Downloader.download`` leaves it open."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(downloader.run_download())
    return downloader.download()  # inside a running loop (Jupyter): parfive uses a thread


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*")
_UNSATISFIED_RANGE = re.compile(r"\s*bytes\s+\*/(\d+)\s*")


@dataclass
class _Outcome:
    """How continuing a partial file ended."""

    kind: str  # "done", "restart" (download from zero), "retry" (transient) or "fail"
    reason: str = ""
    retry_after: float | None = None


async def _continue_partial(url: str, path: Path, timeout: tuple[float, float]) -> _Outcome:
    """
    Continue a partial download with ``Range: bytes=<size>-``.

    Only a 206 whose ``Content-Range`` starts at the file's size is appended; a 416 whose
    ``Content-Range`` gives that size means the file was complete; anything else asks for a
    download from zero.
    """
    offset = path.stat().st_size
    headers = {
        "Range": f"bytes={offset}-",
        # A compressed answer would not be a byte range of the file.
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
    }
    client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout[0], sock_read=timeout[1])
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout, auto_decompress=False) as session,
            session.get(url, headers=headers) as response,
        ):
            status = response.status
            if status == 206:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                if match is None or int(match.group(1)) != offset:
                    return _Outcome(
                        "restart",
                        f"the server answered bytes {response.headers.get('Content-Range')!r}, "
                        f"not from byte {offset}",
                    )
                with path.open("ab") as fh:
                    async for chunk in response.content.iter_chunked(CHUNKSIZE):
                        fh.write(chunk)
                total = match.group(3)
                if total != "*" and path.stat().st_size != int(total):
                    return _Outcome(
                        "retry", f"resumed download ended at {path.stat().st_size} of {total} bytes"
                    )
                return _Outcome("done", f"resumed from byte {offset}")
            if status == 416:
                match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                if match is not None and int(match.group(1)) == offset:
                    return _Outcome("done", "the partial file was already complete")
                return _Outcome("restart", "the partial file is longer than the server's")
            if status == 200:
                return _Outcome("restart", "the server does not resume (HTTP 200 to a Range request)")
            reason = f"HTTP {status} {response.reason or ''}".strip()
            if status in RETRY_HTTP:
                return _Outcome("retry", reason, parse_retry_after(response.headers.get("Retry-After")))
            return _Outcome("fail", reason)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return _Outcome("retry", f"{type(exc).__name__}: {exc}".rstrip(": "))


@dataclass
class _Download:
    """One file (or tar) of an export to download, and its tries so far."""

    url: str
    name: str  # file name in the partial folder
    tries: int = 0  # failed tries (transient)
    redownloads: int = 0  # downloads again after failed verification
    delay: float = 0.0  # seconds to wait before the next try

    @property
    def is_tar(self) -> bool:
        return self.name.lower().endswith(".tar")


def fetch_export(
    status_body: Mapping,
    urls: list[str],
    target: Callable[[str], Path],
    *,
    progress: bool = True,
    overwrite: bool = False,
    on_file: Callable[[str, Path], None] | None = None,
    retries: int = DOWNLOAD_RETRIES,
    verify_retries: int = VERIFY_RETRIES,
    timeout: tuple[float, float] = DOWNLOAD_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    stats: collections.Counter | None = None,
) -> parfive.Results:
    """
    Download a staged export, verify its FITS files and move them to their targets.

    Parameters
    ----------
    status_body : dict
        The status-0 body of the export (its index.json: ``requestid``, ``data`` ...).
    urls : list of str
        What to download: the tar file's URL (url-tar exports) or the files' URLs.
    target : callable
        Maps a file name from the export to the path the file should end up at.
    progress : bool
        Show parfive's progress bars.
    overwrite : bool
        Replace existing target files. Otherwise an existing target is kept and reported as
        retrieved (files only ever reach their target names after verification, so an existing
        one is complete).
    on_file : callable, optional
        Called as ``on_file(name, path)`` for every file of the export once it is at its final
        ``path`` (verified and moved there, or kept because it was there already), before
        `fetch_export` returns; ``name`` is the file name in the export. An exception it raises
        stops the retrieval.
    retries : int
        How many times one download is tried again after transport errors, timeouts, HTTP 5xx,
        408 or 429, with capped exponential backoff and jitter (at least ``Retry-After``).
    verify_retries : int
        How many times a file (or tar) is downloaded again when its content fails verification
        or a tar is damaged (without waiting: that is not the server being busy).
    timeout : (float, float)
        Connect and read (between bytes) timeouts of every download, in seconds.
    sleep : callable
        Waits between retries; tests inject their own.
    stats : collections.Counter, optional
        Counts what happened, for reports: ``"downloads"``, ``"retries"``, ``"redownloads"``,
        ``"resumed"``, ``"restarted"``, ``"published"``, ``"kept"``.

    Returns
    -------
    parfive.Results
        The paths of the verified files, with ``.errors`` listing every file that could not be
        retrieved and every tar member that was refused, with the reason.
    """
    stats = stats if stats is not None else collections.Counter()
    results = parfive.Results()
    requestid = str(status_body.get("requestid") or "export")
    requestid = re.sub(r"[^A-Za-z0-9._-]", "_", requestid)
    listed = _listed_files(status_body)
    probe = listed[0] if listed else (_url_filename(urls[0]) if urls else "export")
    partial = Path(target(probe)).parent / PARTIAL_DIR / requestid
    ok = True
    published: set[Path] = set()
    done: set[str] = set()  # export file names already in the results
    refused: set[str] = set()  # tar members already reported

    def fail(name: str, url: str, reason: str) -> None:
        nonlocal ok
        ok = False
        log.warning("%s (%s): %s", name, url, reason)
        results.add_error(name, url, RetrieveError(f"{name}: {reason}"))

    def accept(name: str, dest: Path, url: str) -> None:
        published.add(dest)
        done.add(name)
        results.append(path=str(dest), url=url)
        if on_file is not None:
            on_file(name, dest)

    def keep(name: str, url: str) -> None:
        """An existing target: kept (only verified files ever reach a target name)."""
        stats["kept"] += 1
        accept(name, Path(target(name)), url)

    def publish(name: str, source: Path, url: str, *, last: bool) -> str | None:
        """
        Verify ``source`` and move it to its target. Returns the verification failure when the
        file may be downloaded again (not ``last``); reports every other failure itself.
        """
        if name in done:
            source.unlink(missing_ok=True)
            return None
        dest = Path(target(name))
        if dest in published:
            fail(
                str(dest),
                url,
                f"{name} maps to the same target as another file of this export; "
                "use a path pattern that keeps the file names apart",
            )
            return None
        if dest.exists() and not overwrite:
            source.unlink(missing_ok=True)
            keep(name, url)
            return None
        reason = verify_fits(source)
        if reason is not None:
            if not last:
                return reason
            fail(str(dest), url, f"failed verification: {reason} (kept in {source.parent})")
            return None
        try:
            _publish(source, dest)
        except OSError as exc:
            fail(str(dest), url, f"cannot be moved into place ({exc}; kept in {source.parent})")
            return None
        stats["published"] += 1
        accept(name, dest, url)
        return None

    # Decide what needs downloading: an existing target is kept unless overwrite is asked for.
    todo: list[_Download] = []
    for url in urls:
        name = _url_filename(url)
        if _safe_name(name) is None:
            fail(name or url, url, "unsafe or empty file name in the export; not downloaded")
            continue
        is_tar = name.lower().endswith(".tar")
        if not overwrite and not is_tar and Path(target(name)).exists():
            keep(name, url)
            continue
        if (
            not overwrite
            and is_tar
            and listed
            and all(Path(target(n)).exists() for n in listed if _is_fits_name(n))
        ):
            for n in listed:
                if _is_fits_name(n) and n not in done:
                    keep(n, url)
            continue
        todo.append(_Download(url, name))

    def transient(item: _Download, reason: str, retry_after: float | None, again: list) -> None:
        if item.tries >= retries:
            where = item.name if item.is_tar else str(target(item.name))
            fail(where, item.url, f"download failed after {item.tries + 1} tries: {reason}")
            (partial / item.name).unlink(missing_ok=True)
            return
        item.delay = backoff_delay(item.tries, retry_after)
        item.tries += 1
        stats["retries"] += 1
        log.info("download of %s failed (%s); trying again in %.1f s", item.url, reason, item.delay)
        again.append(item)

    def redownload(item: _Download, reason: str, again: list) -> bool:
        """Schedule a download from zero after bad content; False when none are left."""
        if item.redownloads >= verify_retries:
            return False
        item.redownloads += 1
        item.delay = 0.0
        stats["redownloads"] += 1
        log.info("%s: %s; downloading it again", item.url, reason)
        (partial / item.name).unlink(missing_ok=True)
        again.append(item)
        return True

    def finish(item: _Download, again: list) -> None:
        """Verify and publish a completed download (file or tar)."""
        path = partial / item.name
        last = item.redownloads >= verify_retries
        if not item.is_tar:
            reason = publish(item.name, path, item.url, last=last)
            if reason is not None and not redownload(item, f"failed verification: {reason}", again):
                publish(item.name, path, item.url, last=True)
            return
        extracted, rejected, damage = _extract_tar(path, partial / "extracted")
        for member, why in rejected:
            if member not in refused:
                # Reported, but nothing to keep the partial folder for.
                refused.add(member)
                log.warning("%s: tar member %r refused: %s", item.url, member, why)
                results.add_error(member, item.url, RetrieveError(f"tar member {member!r}: {why}"))
        bad: list[tuple[str, str]] = []
        for member in extracted:
            reason = publish(member, partial / "extracted" / member, item.url, last=last)
            if reason is not None:
                bad.append((member, reason))
        missing = [n for n in listed if _is_fits_name(n) and n not in extracted and n not in done]
        if (damage or bad) and redownload(item, damage or f"{bad[0][0]} failed verification", again):
            return
        for member, _ in bad:
            publish(member, partial / "extracted" / member, item.url, last=True)
        if damage:
            fail(item.name, item.url, damage)
        for n in missing:
            fail(n, item.url, "listed in the export's index but not found in the tar file")
        if ok:
            path.unlink(missing_ok=True)

    while todo:
        wait = max(item.delay for item in todo)
        if wait > 0:
            sleep(wait)
        partial.mkdir(parents=True, exist_ok=True)
        again: list[_Download] = []
        fresh: list[_Download] = []
        # A partial file left by an interrupted run is continued where it stopped.
        for item in todo:
            path = partial / item.name
            if not (path.is_file() and path.stat().st_size > 0):
                fresh.append(item)
                continue
            outcome = _run_coroutine(lambda item=item, path=path: _continue_partial(item.url, path, timeout))
            log.info("continuing %s: %s (%s)", item.url, outcome.kind, outcome.reason)
            if outcome.kind == "done":
                stats["resumed"] += 1
                finish(item, again)
            elif outcome.kind == "restart":
                stats["restarted"] += 1
                path.unlink(missing_ok=True)
                fresh.append(item)
            elif outcome.kind == "retry":
                transient(item, outcome.reason, outcome.retry_after, again)
            else:
                where = item.name if item.is_tar else str(target(item.name))
                fail(where, item.url, f"download failed: {outcome.reason}")
        if fresh:
            downloader = _downloader(progress, timeout)
            for item in fresh:
                downloader.enqueue_file(
                    item.url, path=partial, filename=item.name, chunksize=CHUNKSIZE, max_splits=1
                )
            stats["downloads"] += len(fresh)
            got = _run(downloader)
            errors = {error.url: error for error in got.errors}
            for item in fresh:
                error = errors.get(item.url)
                if error is None:
                    finish(item, again)
                    continue
                reason, is_transient, retry_after = _classify(error.exception)
                if is_transient:
                    transient(item, reason, retry_after, again)
                else:
                    where = item.name if item.is_tar else str(target(item.name))
                    fail(where, item.url, f"download failed: {reason}")
        todo = again

    if ok:
        shutil.rmtree(partial, ignore_errors=True)
        with contextlib.suppress(OSError):  # only if no other export is in progress there
            partial.parent.rmdir()
    return results


def set_aside(path, requestid):
    """
    Move a file that failed a check away from its target name, into the partial folder.

    Parameters
    ----------
    path : pathlib.Path
        The file, at its target name.
    requestid : str or None
        The export it came from (names the folder it is kept in).

    Returns
    -------
    pathlib.Path
        Where the file is now.
    """
    folder_name = re.sub(r"[^A-Za-z0-9._-]", "_", str(requestid or "export"))
    folder = path.parent / PARTIAL_DIR / folder_name / "rejected"
    folder.mkdir(parents=True, exist_ok=True)
    aside = folder / path.name
    os.replace(path, aside)
    return aside
