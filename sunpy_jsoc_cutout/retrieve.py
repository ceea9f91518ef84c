"""
Retrieval of staged JSOC exports: download, safe tar extraction, FITS verification and atomic
publication of the files.

This is the only module of the package that writes data files. Files are downloaded into a
private partial folder beside their targets (``<target dir>/.jsoc-cutout-partial/<request ID>/``)
and only moved to their final names once they have been verified, so a file at its final name
is always complete (parfive writes straight to the final name and would leave truncated files
there after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import tarfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import parfive
from astropy.io import fits

from .jsoc import USER_AGENT

__all__ = ["RetrieveError", "fetch_export", "verify_fits"]

log = logging.getLogger(__name__)

PARTIAL_DIR = ".jsoc-cutout-partial"
CHUNKSIZE = 65536
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


def _reason(exc: BaseException) -> str:
    """A readable reason for a parfive download error."""
    inner = getattr(exc, "exception", None)
    status = getattr(inner, "status", None)
    if isinstance(status, int):
        return f"HTTP {status} {getattr(inner, 'reason', '') or ''}".strip()
    if inner is not None and inner is not exc:
        return f"{type(inner).__name__}: {inner}"
    return f"{type(exc).__name__}: {exc}"


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


def _downloader(progress: bool) -> parfive.Downloader:
    config = parfive.SessionConfig(
        # parfive's default has no connect timeout; total=None because a big tar may take hours.
        timeouts=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
        headers={"User-Agent": USER_AGENT},
        file_progress=progress,
    )
    # JSOC asked for one connection and no split downloads.
    return parfive.Downloader(max_conn=1, max_splits=1, progress=progress, overwrite=True, config=config)


def _run(downloader: parfive.Downloader) -> parfive.Results:
    """Run a download; `asyncio.run` closes its event loop, ``Downloader.download`` leaves it open."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(downloader.run_download())
    return downloader.download()  # inside a running loop (Jupyter): parfive uses a thread


def fetch_export(
    status_body: Mapping,
    urls: list[str],
    target: Callable[[str], Path],
    *,
    progress: bool = True,
    overwrite: bool = False,
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

    Returns
    -------
    parfive.Results
        The paths of the verified files, with ``.errors`` listing every file that could not be
        retrieved and every tar member that was refused, with the reason.
    """
    results = parfive.Results()
    requestid = str(status_body.get("requestid") or "export")
    requestid = re.sub(r"[^A-Za-z0-9._-]", "_", requestid)
    listed = _listed_files(status_body)
    probe = listed[0] if listed else (_url_filename(urls[0]) if urls else "export")
    partial = Path(target(probe)).parent / PARTIAL_DIR / requestid
    ok = True
    published: set[Path] = set()

    def fail(name: str, url: str, reason: str) -> None:
        nonlocal ok
        ok = False
        log.warning("%s (%s): %s", name, url, reason)
        results.add_error(name, url, RetrieveError(f"{name}: {reason}"))

    def publish(name: str, source: Path, url: str) -> None:
        dest = Path(target(name))
        if dest in published:
            fail(
                str(dest),
                url,
                f"{name} maps to the same target as another file of this export; "
                "use a path pattern that keeps the file names apart",
            )
            return
        if dest.exists() and not overwrite:
            source.unlink(missing_ok=True)
        else:
            reason = verify_fits(source)
            if reason is not None:
                fail(str(dest), url, f"failed verification: {reason} (kept in {source.parent})")
                return
            try:
                _publish(source, dest)
            except OSError as exc:
                fail(str(dest), url, f"cannot be moved into place ({exc}; kept in {source.parent})")
                return
        published.add(dest)
        results.append(path=str(dest), url=url)

    # Decide what needs downloading: an existing target is kept unless overwrite is asked for.
    downloads: list[tuple[str, str]] = []  # (url, local file name)
    for url in urls:
        name = _url_filename(url)
        if _safe_name(name) is None:
            fail(name or url, url, "unsafe or empty file name in the export; not downloaded")
            continue
        is_tar = name.lower().endswith(".tar")
        if not overwrite and not is_tar and Path(target(name)).exists():
            publish(name, partial / name, url)
            continue
        if (
            not overwrite
            and is_tar
            and listed
            and all(Path(target(n)).exists() for n in listed if _is_fits_name(n))
        ):
            for n in listed:
                if _is_fits_name(n):
                    publish(n, partial / n, url)
            continue
        downloads.append((url, name))

    if downloads:
        partial.mkdir(parents=True, exist_ok=True)
        downloader = _downloader(progress)
        for url, name in downloads:
            downloader.enqueue_file(url, path=partial, filename=name, chunksize=CHUNKSIZE, max_splits=1)
        got = _run(downloader)
        failed_urls = set()
        for error in got.errors:
            failed_urls.add(error.url)
            name = _url_filename(error.url)
            where = name if name.lower().endswith(".tar") else str(target(name))
            fail(where, error.url, f"download failed: {_reason(error.exception)}")
        for url, name in downloads:
            if url in failed_urls:
                continue
            path = partial / name
            if not name.lower().endswith(".tar"):
                publish(name, path, url)
                continue
            extracted, rejected, damage = _extract_tar(path, partial / "extracted")
            for member, why in rejected:
                # Reported, but nothing to keep the partial folder for.
                log.warning("%s: tar member %r refused: %s", url, member, why)
                results.add_error(member, url, RetrieveError(f"tar member {member!r}: {why}"))
            if damage:
                fail(name, url, damage)
            for member in extracted:
                publish(member, partial / "extracted" / member, url)
            missing = [n for n in listed if _is_fits_name(n) and n not in extracted]
            for n in missing:
                fail(n, url, "listed in the export's index but not found in the tar file")
            if ok:
                path.unlink(missing_ok=True)

    if ok:
        shutil.rmtree(partial, ignore_errors=True)
        with contextlib.suppress(OSError):  # only if no other export is in progress there
            partial.parent.rmdir()
    return results
