"""
=============================
A tracked cutout of AIA 171 Å
=============================

Ask JSOC for a small box around a point given in helioprojective coordinates as SDO sees
it, let JSOC's ``im_patch`` follow it at the Carrington rate, and compare it with the same
box kept fixed on the detector.

This is the JSOC export form's "IM_PATCH" with LocUnits ``arcsec``: the centre is a
``Helioprojective`` `~astropy.coordinates.SkyCoord`, its ``obstime`` is the reference time
``t_ref``. The example runs against the offline JSOC that ships with the package, so it
needs no network. With the real JSOC, leave out the ``OfflineJSOC`` lines and give your own
registered address to ``a.jsoc.Notify``.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import Helioprojective
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401  (registers the client and mounts a.jsoc_cutout)
from sunpy_jsoc_cutout.testing import OfflineJSOC

###############################################################################
# Start the offline JSOC, a loopback server that answers like jsoc.stanford.edu, and point
# the client at it (``SUNPY_JSOC_CUTOUT_SERVER`` is read when a search starts). The request
# ledger goes to a temporary folder (``SUNPY_JSOC_CUTOUT_STATE``). In a script,
# ``with OfflineJSOC(...) as jsoc:`` does the same and stops the server at the end.

jsoc = OfflineJSOC(staging_seconds=0.5).start()
os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
workdir = tempfile.mkdtemp()
os.environ["SUNPY_JSOC_CUTOUT_STATE"] = os.path.join(workdir, "state")

###############################################################################
# The box: 200x200 pixels around an active region south-east of disk centre, as SDO saw
# it at 08:00. Six hours of 171 Å data, one frame every two hours: four frames.

centre = SkyCoord(
    -70 * u.arcsec, -97 * u.arcsec, frame=Helioprojective(observer="earth", obstime="2014-02-05T08:00")
)
query = [
    a.Time("2014-02-05T08:00", "2014-02-05T14:00"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(171 * u.AA),
    a.Sample(2 * u.hour),
    a.jsoc_cutout.Cutout(center=centre, width=200 * u.pix, height=200 * u.pix),
    a.jsoc.Notify("me@example.org"),
]
tracked = Fido.search(*query, a.jsoc_cutout.Tracking(True))
print(tracked)

###############################################################################
# What JSOC is asked: the record set and the ``im_patch`` process string. ``t=0`` is
# JSOC's (inverted) flag for tracking on.

export = tracked[0].exports[0]
print(export.plan.record_set)
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# The same query with ``Tracking(False)``: JSOC sends ``t=1`` and, as the export form does,
# ``t_ref`` becomes the first record's time.

fixed = Fido.search(*query, a.jsoc_cutout.Tracking(False))
export = fixed[0].exports[0]
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch both. Each query is one export request; they are submitted one after the other
# (JSOC allows one pending export per email address), staged, downloaded and checked.

tracked_files = sorted(Fido.fetch(tracked, path=os.path.join(workdir, "tracked", "{file}")))
fixed_files = sorted(Fido.fetch(fixed, path=os.path.join(workdir, "fixed", "{file}")))
print([os.path.basename(f) for f in tracked_files])

###############################################################################
# First and last frame of each. The tracked box keeps the region in the middle; the fixed
# box stays on the same CCD pixels while the Sun turns the region westwards (to the right).

maps = {
    "tracked": sunpy.map.Map([tracked_files[0], tracked_files[-1]]),
    "fixed": sunpy.map.Map([fixed_files[0], fixed_files[-1]]),
}
fig = plt.figure(figsize=(9, 8))
for row, (name, pair) in enumerate(maps.items()):
    for col, cutout in enumerate(pair):
        ax = fig.add_subplot(2, 2, 2 * row + col + 1, projection=cutout)
        cutout.plot(axes=ax, title=f"{name}, {cutout.date.strftime('%H:%M')}")
        ax.plot_coord(centre, "x", color="cyan")  # where the region was at 08:00
fig.tight_layout()
plt.show()

###############################################################################
# Each file carries im_patch's keywords, among them the Carrington position of the target.

print(maps["tracked"][0].meta["content"])
print(maps["tracked"][0].meta["hgcrln"], maps["tracked"][0].meta["hgcrlt"])

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
