"""
==============================
A NOAA active region by number
==============================

Centre the cutout on a NOAA active region by its number, as the JSOC export form's "NOAA"
field does.

When searching, the client reads the region's daily reports from JSOC's
``su_rsb.NOAA_ActiveRegions`` series (``jsoc_info``) and, as the form does, takes the report
nearest the central meridian: its position becomes a Stonyhurst centre (``locunits=stony``)
and its time the reference time ``t_ref``. ``im_patch`` then tracks that point at the
Carrington rate over the whole query. The offline JSOC knows NOAA 11946, 11959, 11967,
11976 and 11982 (January and February 2014).
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
# NOAA 11967 in AIA 335 Å, a 240x200 arcsec box, every four hours for half a day.
# ``ActiveRegion(1967)`` would do too: as on the form, numbers below 7000 get 10000 added.

res = Fido.search(
    a.Time("2014-02-05T04:00", "2014-02-05T16:00"),
    a.jsoc.Series("aia.lev1_euv_12s"),
    a.jsoc_cutout.Wavelength(335 * u.AA),
    a.Sample(4 * u.hour),
    a.jsoc_cutout.Cutout(
        center=a.jsoc_cutout.ActiveRegion(11967), width=240 * u.arcsec, height=200 * u.arcsec
    ),
    a.jsoc.Notify("me@example.org"),
)

###############################################################################
# The "Cutout" column shows the position found: the report of 2014-02-06 00:00, when the
# region was 5 degrees west of the central meridian. That report lies after the query's
# time range; im_patch follows the region backwards in time just as well.

print(res[0]["T_REC", "Cutout"])
export = res[0].exports[0]
print(export.plan.process(export.t_start, export.t_stop))

###############################################################################
# Fetch and plot the first and the last of the four frames.

files = sorted(Fido.fetch(res, path=os.path.join(workdir, "{file}")))
fig = plt.figure(figsize=(9, 4.5))
for index, cutout in enumerate(sunpy.map.Map([files[0], files[-1]])):
    ax = fig.add_subplot(1, 2, index + 1, projection=cutout)
    cutout.plot(axes=ax, title=f"NOAA 11967, AIA 335 Å {cutout.date.strftime('%H:%M')}")
fig.tight_layout()
plt.show()

###############################################################################
# Stop the offline JSOC.

jsoc.stop()
