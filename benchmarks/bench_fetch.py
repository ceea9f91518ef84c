"""
Benchmark: the guide's walk-through fetched through Fido from the offline JSOC.

Measures wall time of search and fetch, HTTP round trips per CGI program, exports, files and
bytes written. Run from a checkout with its venv::

    .venv/bin/python benchmarks/bench_fetch.py --minutes 30 --staging-seconds 2

The offline JSOC's staging time stands in for JSOC's queue; the numbers show how much of a
fetch is the client's own work and how many round trips it costs.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401 - registers the client
from sunpy_jsoc_cutout.testing import OfflineJSOC


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30, help="length of the time range")
    parser.add_argument("--box", type=int, default=500, help="box width and height in pixels")
    parser.add_argument("--staging-seconds", type=float, default=2.0)
    args = parser.parse_args()

    start = "2014-02-05T08:00:00"
    end = (Time(start) + args.minutes * u.min).isot
    centre = SkyCoord(
        -100 * u.arcsec, -150 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=start)
    )
    query = (
        a.Time(start, end),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA, 211 * u.AA, 304 * u.AA),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=centre, width=args.box * u.pix, height=args.box * u.pix),
        a.jsoc.Notify("me@example.org"),
    )
    with tempfile.TemporaryDirectory() as scratch, OfflineJSOC(staging_seconds=args.staging_seconds) as jsoc:
        os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
        os.environ["SUNPY_JSOC_CUTOUT_STATE"] = str(Path(scratch) / "state")
        os.environ["PARFIVE_HIDE_PROGRESS"] = "1"
        t0 = time.perf_counter()
        res = Fido.search(*query)
        t1 = time.perf_counter()
        files = Fido.fetch(res, path=Path(scratch) / "out" / "{file}", progress=False)
        t2 = time.perf_counter()
        size = sum(Path(f).stat().st_size for f in files)
        print(f"records found:        {len(res[0])}")
        print(f"files fetched:        {len(files)} ({size / 1e6:.1f} MB), errors: {len(files.errors)}")
        print(f"search wall time:     {t1 - t0:.2f} s")
        print(f"fetch wall time:      {t2 - t1:.2f} s (staging {args.staging_seconds:g} s)")
        print(f"exports submitted:    {jsoc.calls['exp_request']}")
        print("HTTP calls by program:")
        for name, count in sorted(jsoc.calls.items()):
            print(f"  {name:16s} {count}")


if __name__ == "__main__":
    main()
