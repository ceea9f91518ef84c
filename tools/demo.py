"""
The JSOC cutout walk-through, end to end, against the offline JSOC.

This is what ``make demo`` runs. It follows the practitioner's guide to JSOC's export form:
AIA 171, 193, 211 and 304 on 2014-02-05 from 08:00, a 500x500 pixel box near disk centre
tracked at the Carrington rate, one frame per minute, all four channels in one export. To
finish in well under two minutes it asks for half an hour instead of the guide's eight hours:
31 frames per channel, as JSOC includes both ends of a time range.

It starts the offline JSOC (a loopback stand-in for jsoc.stanford.edu), points the client at
it, searches, fetches the FITS cutouts, prints the request ID and where the files are, and
draws ``jsoc_cutout_demo.png``: the first cutout of each channel and a full-disk view with the
box drawn on it.

Usage::

    python tools/demo.py --output demo-output
"""

import argparse
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: the picture goes to a file

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.coordinates import Helioprojective
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401  (registers the client and mounts a.jsoc_cutout)
from sunpy_jsoc_cutout.testing import OfflineJSOC, catalog, sun

__all__ = ["main"]

WAVELENGTHS = (171, 193, 211, 304)
START, END = "2014-02-05T08:00", "2014-02-05T08:30"


def search_and_fetch(output):
    """
    Search for the walk-through's cutouts and fetch them into ``output/fits``.

    Returns
    -------
    res : `~sunpy.net.fido_factory.UnifiedResponse`
        The search result.
    files : `parfive.Results`
        The paths of the FITS cutouts.
    """
    # A point a little south-east of disk centre, as SDO saw it at the start.
    centre = SkyCoord(
        -150 * u.arcsec, -200 * u.arcsec, frame=Helioprojective(observer="earth", obstime=START)
    )
    res = Fido.search(
        a.Time(START, END),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.jsoc_cutout.Wavelength(*(w * u.AA for w in WAVELENGTHS)),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=centre, width=500 * u.pix, height=500 * u.pix),
        a.jsoc_cutout.Tracking(True),
        a.jsoc_cutout.Register(True),
        a.jsoc.Notify("me@example.org"),
    )
    print(res)  # one row per record: T_REC, wavelength, the cutout it will get, its size
    files = Fido.fetch(res, path=str(output / "fits" / "{file}"))
    return res, files


def request_ids(res, files):
    """
    The JSOC request IDs of the exports.

    The client records them on the search result when it fetches; every cutout also carries
    its export's ID in the ``RequestID`` keyword, which is where to look in files fetched
    earlier.
    """
    ids = {rid for block in res for rid in getattr(block, "request_ids", [])}
    if not ids:
        for path in files:
            ids.add(fits.getheader(path)["REQUESTID"])
    return sorted(ids)


def first_cutouts(files):
    """The first cutout (earliest ``T_REC``) of each channel, as maps keyed by wavelength."""
    maps = sorted(sunpy.map.Map(sorted(map(str, files)), sequence=True), key=lambda m: m.meta["t_rec"])
    first = {}
    for m in maps:
        first.setdefault(int(m.meta["wavelnth"]), m)
    return first


def full_disk_map(cutout, step=16):
    """
    A coarse full-disk view from the offline JSOC's procedural Sun, at the cutout's record.

    Every ``step``-th pixel of the 4096x4096 image is rendered, so the map is cheap to make
    and its WCS is that of the full image with the pixels ``step`` times larger.
    """
    t_rec = cutout.meta["t_rec"]
    records, _ = catalog.query(f"aia.lev1_euv_12s[{t_rec}][{int(cutout.meta['wavelnth'])}]")
    record = records[0]
    header = dict(sun.full_disk_header(record))
    # Sample the centres of step x step blocks.
    offset = (step - 1) / 2
    index = np.arange(offset, header["NAXIS1"], step)
    data = sun.render(record, header, index, index)
    for axis in ("1", "2"):
        header["NAXIS" + axis] = index.size
        header["CDELT" + axis] *= step
        header["CRPIX" + axis] = (header["CRPIX" + axis] - 1 - offset) / step + 1
    header.pop("R_SUN", None)  # in full-resolution pixels; sunpy uses RSUN_OBS instead
    return sunpy.map.Map(data, header)


def draw(cutouts, fulldisk, path):
    """Draw one panel per channel and the full disk with the box, into ``path``."""
    fig = plt.figure(figsize=(16, 9), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=(1, 1, 1.6))
    for i, wavelength in enumerate(WAVELENGTHS):
        m = cutouts[wavelength]
        ax = fig.add_subplot(grid[i // 2, i % 2], projection=m)
        m.plot(axes=ax, title=f"AIA {wavelength} Å  {m.date.strftime('%Y-%m-%d %H:%M:%S')}")
        ax.coords[0].set_axislabel("Solar X")
        ax.coords[1].set_axislabel("Solar Y")
    ax = fig.add_subplot(grid[:, 2], projection=fulldisk)
    fulldisk.plot(axes=ax, title=f"Full disk (offline JSOC), {fulldisk.date.strftime('%Y-%m-%d %H:%M')}")
    fulldisk.draw_limb(axes=ax, color="white", linewidth=0.8)
    ax.coords[0].set_axislabel("Solar X")
    ax.coords[1].set_axislabel("Solar Y")
    box = cutouts[WAVELENGTHS[0]]
    fulldisk.draw_quadrangle(
        box.bottom_left_coord, top_right=box.top_right_coord, axes=ax, edgecolor="cyan", linewidth=1.5
    )
    fig.suptitle("JSOC im_patch cutouts: 500x500 pixels, tracked at the Carrington rate, one export")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="folder for the FITS files, the picture and the client's state",
    )
    args = parser.parse_args(argv)
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with OfflineJSOC(staging_seconds=2) as jsoc:
        # Point the client at the offline JSOC; without these it talks to jsoc.stanford.edu.
        os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
        os.environ["SUNPY_JSOC_CUTOUT_STATE"] = str(output / "state")
        print(f"Offline JSOC running at {jsoc.url}")

        res, files = search_and_fetch(output)
        exports = jsoc.calls["exp_request"]

    if files.errors:
        for error in files.errors:
            print(f"Could not retrieve {error.url}: {error.exception}", file=sys.stderr)
        return 1
    expected = len(res[0])
    if len(files) != expected:
        print(f"Expected {expected} FITS files, got {len(files)}", file=sys.stderr)
        return 1

    print(f"\nExport requests sent: {exports}")
    print(f"Request ID(s): {', '.join(request_ids(res, files))}")
    print(f"{len(files)} FITS cutouts in {output / 'fits'}")

    cutouts = first_cutouts(files)
    first = cutouts[WAVELENGTHS[0]]
    print(
        f"First cutout: {Path(sorted(files)[0]).name}, {first.data.shape[1]}x{first.data.shape[0]} pixels, "
        f"{first.meta['content']!r}"
    )
    picture = output / "jsoc_cutout_demo.png"
    draw(cutouts, full_disk_map(first), picture)
    print(f"Picture: {picture}")
    print(f"Done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
