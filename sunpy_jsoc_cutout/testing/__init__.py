"""
The offline JSOC: a loopback stand-in for JSOC's export service, for tests, demos and benchmarks.

``OfflineJSOC`` (in `sunpy_jsoc_cutout.testing.server`) serves JSOC's CGI programs and export
files; the pytest plugin (`sunpy_jsoc_cutout.testing.pytest_plugin`) provides it as the
``offline_jsoc`` and ``jsoc_env`` fixtures. ``Faults`` (``OfflineJSOC.faults``) injects network
and export faults, settable while the server runs. The heavy modules are imported on first use, so that
loading the pytest plugin stays cheap.
"""

from __future__ import annotations

__all__ = ["REGISTERED_EMAILS", "Faults", "OfflineJSOC"]

#: Addresses the offline JSOC treats as registered export addresses.
REGISTERED_EMAILS = ("me@example.org", "jsoc@sunpy.org", "test@example.org")


def __getattr__(name: str):
    if name == "OfflineJSOC":
        from sunpy_jsoc_cutout.testing.server import OfflineJSOC

        return OfflineJSOC
    if name == "Faults":
        from sunpy_jsoc_cutout.testing.exports import Faults

        return Faults
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
