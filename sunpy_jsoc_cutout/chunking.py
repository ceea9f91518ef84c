"""
Splitting an export into requests JSOC accepts: under the size cap and the record-count limit.

JSOC refuses an export whose size estimate exceeds 100 000 MB (status 3). The estimate is the
stored size of the full-frame segments times ``sizeratio``, so a cutout export sent with its
``sizeratio`` is sized as cutouts, but the stored size per frame is only known roughly: the
estimate here uses generous frame sizes and keeps a margin below the cap. JSOC also refuses
record sets of more than about 15 000 AIA or 32 000 HMI records ("... is too many records in one
request"). `split` cuts the records of one planned export, by time, into chunks within both
limits; `chunk_record_set` writes the record set of one chunk.

Pure computation: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sunpy_jsoc_cutout import plan

__all__ = [
    "DEFAULT_FRAME_BYTES",
    "DEFAULT_RECORD_LIMIT",
    "FRAME_BYTES",
    "MAX_EXPORT_BYTES",
    "RECORD_LIMITS",
    "SIZE_MARGIN",
    "Chunk",
    "chunk_record_set",
    "drms_time",
    "max_records",
    "split",
]

#: jsoc_fetch's size cap (``MAX_STRAIGHT_EXPORT_SIZE``, 100 000 MB).
MAX_EXPORT_BYTES = 100_000 * 1024 * 1024
#: The share of the cap an export's estimate may use: the stored frame sizes below are
#: estimates, so stay well clear of the cap.
SIZE_MARGIN = 0.8
#: Stored bytes of one full-frame segment per instrument, rounded up from what JSOC reports
#: (about 8 MB per Rice-compressed AIA image, 15 MB per HMI magnetogram).
FRAME_BYTES = {"AIA": 12_000_000, "HMI": 20_000_000}
DEFAULT_FRAME_BYTES = 20_000_000
#: Records per export request JSOC accepts ("about 15,000 AIA or 32,000 HMI records").
RECORD_LIMITS = {"AIA": 15_000, "HMI": 32_000}
DEFAULT_RECORD_LIMIT = 15_000

_RECORD_SET = re.compile(r"^(?P<series>[^\[\{]+)\[(?P<time>[^\]]*)\](?P<rest>.*)$", re.S)


@dataclass(frozen=True)
class Chunk:
    """
    The records of one export request: a run of consecutive record times.

    Parameters
    ----------
    t_start, t_stop : str
        The first and last T_REC of the chunk, as ``jsoc_info`` printed them.
    count : int
        The number of records in the chunk.
    """

    t_start: str
    t_stop: str
    count: int


def max_records(instrument: str, size_ratio: float, segments: int = 1) -> int:
    """
    The most records one export may hold under both of JSOC's limits.

    Parameters
    ----------
    instrument : str
        ``"AIA"`` or ``"HMI"`` (others use the defaults).
    size_ratio : float
        The ``sizeratio`` sent with the request (cutout pixels / full-frame pixels).
    segments : int
        Segments exported per record.

    Returns
    -------
    int
        At least 1.
    """
    instrument = instrument.upper()
    limit = RECORD_LIMITS.get(instrument, DEFAULT_RECORD_LIMIT)
    per_record = FRAME_BYTES.get(instrument, DEFAULT_FRAME_BYTES) * max(size_ratio, 0.0) * max(segments, 1)
    if per_record > 0:
        limit = min(limit, math.floor(MAX_EXPORT_BYTES * SIZE_MARGIN / per_record))
    return max(1, limit)


def split(trecs: Sequence[str], limit: int) -> list[Chunk]:
    """
    Cut a sorted list of record times into chunks of at most ``limit`` records.

    Records sharing a T_REC (the channels of one AIA slot) stay in one chunk, so a chunk can be
    written as a time range; a single slot with more records than ``limit`` becomes a chunk of
    its own.

    Parameters
    ----------
    trecs : sequence of str
        The T_REC of every record, in the order ``jsoc_info`` listed them (by time).
    limit : int
        The most records per chunk.

    Returns
    -------
    list of Chunk
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    groups: list[list] = []  # [t_rec, count], consecutive equal times merged
    for trec in trecs:
        if groups and groups[-1][0] == trec:
            groups[-1][1] += 1
        else:
            groups.append([trec, 1])
    chunks: list[Chunk] = []
    first = last = None
    count = 0
    for trec, n in groups:
        if count and count + n > limit:
            chunks.append(Chunk(first, last, count))
            first, count = None, 0
        if first is None:
            first = trec
        last = trec
        count += n
    if count:
        chunks.append(Chunk(first, last, count))
    return chunks


def drms_time(trec: str) -> str:
    """
    A T_REC as ``jsoc_info`` prints it, in DRMS's TAI form for a record-set filter.

    Parameters
    ----------
    trec : str
        ``2014-02-05T08:00:01Z`` (AIA, UTC) or ``2014.02.05_08:00:00_TAI`` (HMI).

    Returns
    -------
    str
        E.g. ``2014.02.05_08:00:36_TAI``.
    """
    return plan.drms_time(plan.parse_drms_time(trec))


def chunk_record_set(record_set: str, chunk: Chunk) -> str:
    """
    The record set of one chunk: the plan's record set with its time filter narrowed.

    The sampling step (``@60s``) is kept; since a chunk starts at a record the full record set
    selected, sampling from there selects the same records.

    Parameters
    ----------
    record_set : str
        The plan's record set, ``series[<time filter>]...``.
    chunk : Chunk

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If the record set has no time filter to narrow.
    """
    match = _RECORD_SET.match(record_set)
    if not match:
        raise ValueError(f"cannot split {record_set!r}: it has no time filter")
    _, at, step = match["time"].partition("@")
    window = f"{drms_time(chunk.t_start)}-{drms_time(chunk.t_stop)}"
    return f"{match['series']}[{window}{at}{step}]{match['rest']}"
