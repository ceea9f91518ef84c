"""
=========================================
A centre seen from another observer
=========================================

Give the centre of a cutout as another spacecraft saw it, for example a feature picked on
a STEREO image, and let the client move it to SDO's view before JSOC is asked.

JSOC's ``im_patch`` reads ``x`` and ``y`` (LocUnits ``arcsec``) as arcseconds from disk
centre *as the instrument saw it*. A ``Helioprojective`` coordinate from another observer
therefore has to be converted first; the client does it with `sunpy.coordinates` for the
reference time ``t_ref`` (the coordinate's ``obstime``). sunpy's own ``a.jsoc.Cutout``
sends the numbers unchanged whatever the observer.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicStonyhurst, Helioprojective
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
# A STEREO-like observer 60 degrees west of Earth, a little closer to the Sun. It sees an
# active region near the centre of its disk, at (50", 240").

t_ref = "2014-02-05T08:00"
stereo = SkyCoord(60 * u.deg, 0 * u.deg, 0.97 * u.AU, frame=HeliographicStonyhurst(obstime=t_ref))
centre = SkyCoord(50 * u.arcsec, 240 * u.arcsec, frame=Helioprojective(observer=stereo, obstime=t_ref))

###############################################################################
# The same point as SDO (close enough to Earth's centre for the purpose) sees it: near the
# west limb. This is what the client sends.

seen_by_sdo = centre.transform_to(Helioprojective(observer="earth", obstime=t_ref))
print(seen_by_sdo)

###############################################################################
# Search for two frames an hour apart, 150x150 arcsec, tracked.

res = Fido.search(
    a.Time("2014-02-05T08:00", "2014-02-05T09:00"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(193 * u.AA),
    a.Sample(1 * u.hour),
    a.jsoc_cutout.Cutout(center=centre, width=150 * u.arcsec, height=150 * u.arcsec),
    a.jsoc.Notify("me@example.org"),
)
export = res[0].exports[0]
print(export.plan.record_set)
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# ``x`` and ``y`` in the process string are SDO's view of the point, not the numbers typed
# in. Fetch the cutouts and mark the requested point, transformed into each map's frame by
# sunpy. It sits in the middle of the first box; an hour later the box has followed the
# region, while the marker (a fixed point in space, not on the rotating Sun) stays behind.

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
fig = plt.figure(figsize=(9, 4.5))
for index, cutout in enumerate(sunpy.map.Map(files)):
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=f"AIA 193 Å {cutout.date.strftime('%H:%M')}")
    ax.plot_coord(centre, "x", color="cyan", markersize=10)
fig.tight_layout()
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
