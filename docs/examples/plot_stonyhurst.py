"""
================================
A centre in Stonyhurst degrees
================================

Give the centre in heliographic Stonyhurst coordinates: longitude from the central meridian
and latitude, at the reference time ``t_ref`` (the coordinate's ``obstime``).

This is LocUnits "stony" on the JSOC export form (``locunits=stony``): ``im_patch`` turns
the position into Carrington coordinates on the image nearest ``t_ref`` and, with tracking
on, follows that point at the Carrington rate.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicStonyhurst
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
# A region that has just rotated onto the disk: 64 degrees east of the central meridian,
# 8 degrees north, at 08:00. Three frames over eight hours, a 150x150 arcsec box.

centre = SkyCoord(-64 * u.deg, 8 * u.deg, frame=HeliographicStonyhurst(obstime="2014-02-05T08:00"))
res = Fido.search(
    a.Time("2014-02-05T08:00", "2014-02-05T16:00"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(211 * u.AA),
    a.Sample(4 * u.hour),
    a.jsoc_cutout.Cutout(center=centre, width=150 * u.arcsec, height=150 * u.arcsec),
    a.jsoc.Notify("me@example.org"),
)
print(res)

###############################################################################
# The process string carries the Stonyhurst longitude and latitude as given.

export = res[0].exports[0]
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch and plot the first and the last frame with a Stonyhurst grid. Eight hours later the
# region has turned about 4 degrees west, and the box with it (im_patch tracks at the rigid
# Carrington rate).

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
fig = plt.figure(figsize=(9, 4.5))
for index, cutout in enumerate(sunpy.map.Map([files[0], files[-1]])):
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=False)
    ax.set_title(f"AIA 211 Å {cutout.date.strftime('%H:%M')}", pad=30)
    cutout.draw_grid(axes=ax, grid_spacing=10 * u.deg)
fig.tight_layout()
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
