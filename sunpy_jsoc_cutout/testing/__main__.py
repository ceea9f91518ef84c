"""
Run the offline JSOC in the foreground: ``python -m sunpy_jsoc_cutout.testing --port 8765``.

Prints the base URL (use it as ``SUNPY_JSOC_CUTOUT_SERVER``) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import threading

__all__ = ["main"]


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
    args = parser.parse_args(argv)

    from sunpy_jsoc_cutout.testing.server import OfflineJSOC

    try:
        jsoc = OfflineJSOC(
            host=args.host,
            port=args.port,
            staging_seconds=args.staging_seconds,
            file_root=args.file_root,
            ignore_process=args.ignore_process,
        )
    except ValueError as exc:
        parser.error(str(exc))
    jsoc.start()
    print(f"Offline JSOC serving at {jsoc.url}", flush=True)
    print(f"  export SUNPY_JSOC_CUTOUT_SERVER={jsoc.url}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopping.", file=sys.stderr)
    finally:
        jsoc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
