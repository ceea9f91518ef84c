"""
=====================================================
AIA level 1.5, registration and cropping on JSOC
=====================================================

Let JSOC bring the AIA images to level 1.5 before cutting them (the export form's
AIA_SCALE box), register every cutout on its target and blank the pixels off the limb (the
form's IM_PATCH "register" and "crop" boxes).

- ``a.jsoc_cutout.Scale(True)`` adds JSOC's ``aia_scale`` step before ``im_patch``:
  ``aia_scale_aialev1`` for ``aia.lev1_euv_12s`` and the other ``aia.lev1_*`` series,
  ``aia_scale_orig`` for ``aia.lev1``. The images are rescaled to 0.6 arcsec per pixel,
  turned solar north up and centred, as ``aia_prep`` does; HMI series are refused.
- ``a.jsoc_cutout.Register(True)`` (``r=1``) resamples each cutout so that the target sits on
  the array centre to a fraction of a pixel and ``CROTA2`` is 0.
- ``a.jsoc_cutout.Crop(True)`` (``c=1``) sets the pixels off the limb to NaN.

After the download, the client checks that JSOC really did all three (``CDELT1`` of 0.6,
``CROTA2`` of 0, NaN off the limb and nowhere else): JSOC returns unprocessed images without
an error when a processing argument is wrong.
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
# Start the offline JSOC and point the client at it.

jsoc = OfflineJSOC(staging_seconds=0.5).start()
os.environ["SUNPY_JSOC_CUTOUT_SERVER"] = jsoc.url
workdir = tempfile.mkdtemp()
os.environ["SUNPY_JSOC_CUTOUT_STATE"] = os.path.join(workdir, "state")

###############################################################################
# A region near the west limb, in a 300x300 arcsec box that reaches past the limb, two
# frames an hour apart.

centre = SkyCoord(
    840 * u.arcsec, 290 * u.arcsec, frame=Helioprojective(observer="earth", obstime="2014-02-05T08:00")
)
res = Fido.search(
    a.Time("2014-02-05T08:00", "2014-02-05T09:00"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(193 * u.AA),
    a.Sample(1 * u.hour),
    a.jsoc_cutout.Cutout(center=centre, width=300 * u.arcsec, height=300 * u.arcsec),
    a.jsoc_cutout.Scale(True),
    a.jsoc_cutout.Register(True),
    a.jsoc_cutout.Crop(True),
    a.jsoc.Notify("me@example.org"),
)

###############################################################################
# Two processing steps, in the order the export form writes them: ``aia_scale_aialev1``,
# then ``im_patch`` with ``r=1`` and ``c=1``.

export = res[0].exports[0]
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch, check the keywords the verification looked at, and plot both frames. The limb
# runs through the box; beyond it the pixels are NaN (drawn in the axes' background colour).

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
fig = plt.figure(figsize=(9, 4.5))
for index, cutout in enumerate(sunpy.map.Map(files)):
    print(
        f"{cutout.date.strftime('%H:%M')}: CDELT1 = {cutout.meta['cdelt1']} arcsec, "
        f"CROTA2 = {cutout.meta['crota2']}, LVL_NUM = {cutout.meta.get('lvl_num')}"
    )
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=f"AIA 193 Å level 1.5 {cutout.date.strftime('%H:%M')}")
    cutout.draw_limb(axes=ax, color="white")
fig.tight_layout()
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
