"""
================================
A centre in Carrington degrees
================================

Give the centre as a Carrington longitude and latitude, the way the JSOC cutout guide's
walk-through does (LocUnits "Carrington LatLon" on the export form, ``locunits=carrlong``).

A Carrington position needs a Carrington rotation number too: the client sends
``car_rot``, the rotation in which that longitude crosses the central meridian nearest the
reference time, computed with `sunpy.coordinates`. The guide warns that with a Carrington
centre "the tracking option MUST be selected or the returned data will be complete
nonsense": the client refuses ``Tracking(False)`` with such a centre before anything is sent.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import HeliographicCarrington
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
# Carrington longitude 80, latitude -12: an active region near disk centre on 2014-02-05.

centre = SkyCoord(
    80 * u.deg, -12 * u.deg, frame=HeliographicCarrington(observer="earth", obstime="2014-02-05T08:00")
)
query = [
    a.Time("2014-02-05T08:00", "2014-02-05T14:00"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(171 * u.AA),
    a.Sample(2 * u.hour),
    a.jsoc_cutout.Cutout(center=centre, width=250 * u.pix, height=250 * u.pix),
    a.jsoc.Notify("me@example.org"),
]

###############################################################################
# Without tracking, the query fails at search time, with the reason and what to do.

try:
    Fido.search(*query, a.jsoc_cutout.Tracking(False))
except ValueError as error:
    print(error)

###############################################################################
# With tracking (the default), JSOC gets ``locunits=carrlong`` and ``car_rot``.

res = Fido.search(*query, a.jsoc_cutout.Tracking(True))
export = res[0].exports[0]
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch the four frames and plot the first and the last with the Carrington grid: the box
# turns with the Sun, the region stays in its middle.

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
fig = plt.figure(figsize=(9, 4.5))
for index, cutout in enumerate(sunpy.map.Map([files[0], files[-1]])):
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=False)
    ax.set_title(f"AIA 171 Å {cutout.date.strftime('%H:%M')}", pad=30)
    cutout.draw_grid(axes=ax, system="carrington", grid_spacing=5 * u.deg)
    # The target at this frame's time: a fixed Carrington point turns with the Sun.
    here = SkyCoord(
        80 * u.deg, -12 * u.deg, frame=HeliographicCarrington(observer="earth", obstime=cutout.date)
    )
    ax.plot_coord(here, "x", color="cyan", markersize=10)
fig.tight_layout()
plt.show()

###############################################################################
# im_patch records the target it followed in every file.

print(sunpy.map.Map(files[-1]).meta["hgcrln"], sunpy.map.Map(files[-1]).meta["hgcrlt"])

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
