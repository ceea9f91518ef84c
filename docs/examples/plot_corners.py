"""
===================================
A box given by two opposite corners
===================================

Give the box by its bottom-left and top-right corners, as sunpy's ``a.jsoc.Cutout`` takes
it, instead of a centre with a width and a height. The export form has no such field; the
client computes the centre and the size and sends them as X, Y, Width and Height.

Helioprojective corners (seen from any observer, moved to SDO's view at ``t_ref``) give a
box in arcseconds, heliographic corners a box in degrees (BoxUnits "degrees"), two pixel
pairs a box in pixels.
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
# A 400x250 arcsec box south-east of disk centre, as SDO saw it at 08:00.

frame = Helioprojective(observer="earth", obstime="2014-02-05T08:00")
bottom_left = SkyCoord(-300 * u.arcsec, -250 * u.arcsec, frame=frame)
top_right = SkyCoord(100 * u.arcsec, 0 * u.arcsec, frame=frame)

res = Fido.search(
    a.Time("2014-02-05T08:00", "2014-02-05T08:02"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(171 * u.AA, 304 * u.AA),
    a.Sample(2 * u.min),
    a.jsoc_cutout.Cutout(bottom_left=bottom_left, top_right=top_right),
    a.jsoc.Notify("me@example.org"),
)
print(res)

###############################################################################
# The box's centre (-100", -125") and size (400x250 arcsec) in the process string. Both
# channels are in one record set, so one export request brings them all.

export = res[0].exports[0]
print(export.plan.record_set)
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch, and plot the 171 and 304 Å cutouts of 08:00 with the requested corners marked.

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
print([os.path.basename(f) for f in files])
first = [f for f in files if "T080001Z" in f]
fig = plt.figure(figsize=(10, 4))
for index, cutout in enumerate(sunpy.map.Map(first)):
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=f"AIA {cutout.wavelength.value:.0f} Å {cutout.date.strftime('%H:%M')}")
    ax.plot_coord(SkyCoord([bottom_left, top_right]), "o", color="cyan")
fig.tight_layout()
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
