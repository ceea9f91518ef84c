"""
sunpy-jsoc-cutout: JSOC's server-side cutouts as a sunpy Fido client.

Importing this package registers `JSOCCutoutClient` with `sunpy.net.Fido` and mounts the
cutout attrs as ``sunpy.net.attrs.jsoc_cutout``.
"""

from sunpy_jsoc_cutout.client import JSOCCutoutClient

__all__ = ["JSOCCutoutClient", "__version__"]

try:
    from importlib.metadata import version as _version

    __version__ = _version("sunpy-jsoc-cutout")
except Exception:
    __version__ = "unknown"
