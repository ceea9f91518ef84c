"""
Benchmark: the cost of checking downloaded cutouts against their plan (`sunpy_jsoc_cutout.verify`).

Fetches a small tracked cutout series from the offline JSOC, then times
`verify.check_cutouts` over the files, with and without the FITS checksum pass::

    .venv/bin/python benchmarks/bench_verify.py --minutes 10
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
from sunpy_jsoc_cutout import verify
from sunpy_jsoc_cutout.testing import OfflineJSOC


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10, help="length of the time range")
    args = parser.parse_args()

    start = "2014-02-05T08:00:00"
    centre = SkyCoord(
        -100 * u.arcsec, 50 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=start)
    )
    query = (
        a.Time(start, (Time(start) + args.minutes * u.min).isot),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(171 * u.AA, 304 * u.AA),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=centre, width=500 * u.pix, height=500 * u.pix),
        a.jsoc.Notify("me@example.org"),
    )
    with tempfile.TemporaryDirectory() as scratch, OfflineJSOC(staging_seconds=0.5) as jsoc:
        os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
        os.environ["SUNPY_JSOC_CUTOUT_STATE"] = str(Path(scratch) / "state")
        res = Fido.search(*query)
        files = list(Fido.fetch(res, path=Path(scratch) / "out" / "{file}", progress=False))
        expectation = verify.expectation_from_plan(res[0].exports[0].plan)
        for checksum in (False, True):
            t0 = time.perf_counter()
            failures = verify.check_cutouts(files, expectation, checksum=checksum)
            per_file = (time.perf_counter() - t0) / len(files)
            print(
                f"checksum={checksum!s:5}: {len(files)} files, {len(failures)} failures, "
                f"{per_file * 1000:.1f} ms per file"
            )


if __name__ == "__main__":
    main()
