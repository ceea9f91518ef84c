"""
=============================
A tracked cutout of AIA 171 Å
=============================

Search for a cutout of AIA 171 Å data, let JSOC cut it out and track it at the Carrington
rate, fetch the FITS files and plot one of them.

This example runs against the offline JSOC that ships with the package, so it needs no
network. With the real JSOC, leave out the `OfflineJSOC` lines and give your own registered
address to ``a.jsoc.Notify``.
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
# Start the offline JSOC, a loopback server that answers like jsoc.stanford.edu, and
# point the client at it. ``SUNPY_JSOC_CUTOUT_SERVER`` is read when a search starts.

jsoc = OfflineJSOC(staging_seconds=0.5).start()
os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
workdir = tempfile.mkdtemp()
os.environ["SUNPY_JSOC_CUTOUT_STATE"] = os.path.join(workdir, "state")

###############################################################################
# The box: 300x300 pixels around a point south-east of disk centre, as SDO saw it at
# 08:00. Its ``obstime`` is the reference time at which the centre applies.

centre = SkyCoord(-100 * u.arcsec, -120 * u.arcsec,
                  frame=Helioprojective(observer="earth", obstime="2014-02-05T08:00"))

###############################################################################
# Search for two minutes of 171 Å data, one frame a minute, tracked at the Carrington
# rate. The result lists the records and the cutout each one will get.

res = Fido.search(
    a.Time("2014-02-05T08:00", "2014-02-05T08:02"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(171 * u.AA),
    a.Sample(1 * u.min),
    a.jsoc_cutout.Cutout(center=centre, width=300 * u.pix, height=300 * u.pix),
    a.jsoc_cutout.Tracking(True),
    a.jsoc.Notify("me@example.org"),
)
print(res)

###############################################################################
# Fetch submits one export request, waits for JSOC to stage it, downloads it and returns
# the FITS files.

files = Fido.fetch(res, path=os.path.join(workdir, "{file}"))
print(sorted(os.path.basename(f) for f in files))

###############################################################################
# Each file is a cutout with its own WCS and im_patch's keywords.

cutout = sunpy.map.Map(sorted(files)[0])
print(cutout.meta["content"])
print(f"Carrington position of the box centre: {cutout.meta['hgcrln']:.2f}, "
      f"{cutout.meta['hgcrlt']:.2f} deg")

fig = plt.figure()
ax = fig.add_subplot(projection=cutout)
cutout.plot(axes=ax)
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
