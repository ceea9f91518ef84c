"""
Run the offline JSOC in the foreground: ``python -m sunpy_jsoc_cutout.testing --port 8765``.

Prints the base URL (use it as ``SUNPY_JSOC_CUTOUT_SERVER``) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import threading

__all__ = ["main"]


def _parse_faults(text: str) -> dict:
    """``"cgi_500=0.1,malicious_tar=1"`` -> ``{"cgi_500": 0.1, "malicious_tar": 1.0}``."""
    knobs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--faults: {item!r} is not NAME=VALUE")
        try:
            knobs[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--faults: the value of {name.strip()!r} is not a number") from None
    return knobs


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, start the server and block until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m sunpy_jsoc_cutout.testing",
        description="Serve the offline JSOC (a loopback stand-in for JSOC's export service).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--staging-seconds",
        type=float,
        default=5.0,
        help="time an export takes to reach status 0 (default 5)",
    )
    parser.add_argument(
        "--file-root",
        default=None,
        help="folder for export files (default: a temporary folder, removed on exit)",
    )
    parser.add_argument(
        "--ignore-process", action="store_true", help="export full-disk images whatever the process string"
    )
    parser.add_argument(
        "--faults",
        default="",
        help="fault knobs, e.g. 'cgi_500=0.05,cgi_reset=0.05,download_corrupt=0.1,status6_polls=2' "
        "(see sunpy_jsoc_cutout.testing.Faults)",
    )
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the fault draws")
    args = parser.parse_args(argv)
    try:
        faults = _parse_faults(args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    faults["seed"] = args.fault_seed

    from sunpy_jsoc_cutout.testing.server import OfflineJSOC

    try:
        jsoc = OfflineJSOC(
            host=args.host,
            port=args.port,
            staging_seconds=args.staging_seconds,
            file_root=args.file_root,
            ignore_process=args.ignore_process,
            faults=faults,
        )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    jsoc.start()
    print(f"Offline JSOC serving at {jsoc.url}", flush=True)
    print(f"  export SUNPY_JSOC_CUTOUT_SERVER={jsoc.url}", flush=True)
    if args.faults:
        print(f"  injecting faults: {jsoc.faults!r}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        if jsoc.faults.injected:
            print(f"Faults injected: {dict(jsoc.faults.injected)}", file=sys.stderr)
        print("Stopping.", file=sys.stderr)
    finally:
        jsoc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
