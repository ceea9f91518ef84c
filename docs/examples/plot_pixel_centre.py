"""
=============================
A centre in detector pixels
=============================

Give the centre as a pixel of the detector, for example one read off a full-disk image you
already have. This is LocUnits "pixels" on the JSOC export form (``locunits=pixels``).

The pair ``(x, y) * u.pix`` counts as ``im_patch`` does: from the lower-left corner of the
4096x4096 image, first pixel (1, 1). The pixel refers to the reference image, the one
nearest ``t_ref`` (here the start of the query, since a pixel pair has no ``obstime``);
with tracking on, ``im_patch`` turns it into a Carrington position there and follows it.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import sunpy.map
from sunpy.net import Fido
from sunpy.net import attrs as a

import sunpy_jsoc_cutout  # noqa: F401  (registers the client and mounts a.jsoc_cutout)
from sunpy_jsoc_cutout.testing import OfflineJSOC

###############################################################################
# Start the offline JSOC and point the client at it.

jsoc = OfflineJSOC(staging_seconds=0.5).start()
os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
workdir = tempfile.mkdtemp()
os.environ["SUNPY_JSOC_CUTOUT_STATE"] = os.path.join(workdir, "state")

###############################################################################
# Pixel (1933, 1886), a little south-east of the centre of the detector, with a box of
# 180x180 pixels, in HMI's line-of-sight magnetograms: two frames, six hours apart.

res = Fido.search(
    a.Time("2014-02-05T08:00", "2014-02-05T14:00"),
    a.jsoc.Series("hmi.M_45s"),
    a.Sample(6 * u.hour),
    a.jsoc_cutout.Cutout(center=(1933, 1886) * u.pix, width=180 * u.pix, height=180 * u.pix),
    a.jsoc.Notify("me@example.org"),
)
print(res)

###############################################################################
# What JSOC is asked: HMI's record set has the CAMERA prime key after T_REC, and the process
# string gives the pixel pair as typed.

export = res[0].exports[0]
print(export.plan.record_set)
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch and plot both frames. HMI's images are upside down on the detector (CROTA2 near
# 180 degrees); im_patch turns the cutouts by 180 degrees, so they come with north up.

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
fig = plt.figure(figsize=(9, 4.5))
for index, cutout in enumerate(sunpy.map.Map(files)):
    print(f"CROTA2 = {cutout.meta['crota2']:.3f};", cutout.meta["history"].splitlines()[-1])
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=f"HMI magnetogram {cutout.date.strftime('%H:%M')}")
fig.tight_layout()
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
