"""
kill -9 of a fetch at randomised points, then a re-run: every file ends up present and verified,
with no duplicate export.

The offline JSOC runs in the test process; each fetch to be killed runs in a child ``python -c``
and is killed (SIGKILL) a small random delay after the server sees it reach a phase: its export
request (submission), its export being staged, its first download, or its last download (the
child then extracts, verifies, moves and records the files). The re-run happens in the test
process with the same state folder.
"""

import inspect
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from sunpy_jsoc_cutout import JSOCCutoutClient, chunking, retrieve, verify
from sunpy_jsoc_cutout.ledger import Ledger
from sunpy_jsoc_cutout.testing.server import OfflineJSOC

RUNS = 20
PHASES = ("submission", "staging", "download", "extraction")
EMAIL = "test@example.org"


def make_query(spec):
    """The query of one run (also run in the child, from this function's source)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from sunpy.coordinates import frames
    from sunpy.net import attrs as a

    start = f"2014-02-05T{8 + spec['run'] // 30:02d}:{2 * (spec['run'] % 30):02d}:00"
    stop = f"2014-02-05T{8 + spec['run'] // 30:02d}:{2 * (spec['run'] % 30) + spec['minutes']:02d}:00"
    centre = SkyCoord(
        -200 * u.arcsec, 150 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=start)
    )
    return (
        a.Time(start, stop),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=centre, width=40 * u.pix, height=30 * u.pix),
        a.jsoc_cutout.Wavelength(*[w * u.AA for w in spec["channels"]]),
    )


CHILD = textwrap.dedent(
    """
    import json, sys
    from sunpy_jsoc_cutout import JSOCCutoutClient, chunking
    spec = json.loads(sys.argv[1])
    if spec["limit"]:
        chunking.RECORD_LIMITS["AIA"] = spec["limit"]
    {make_query}
    client = JSOCCutoutClient()
    res = client.search(*make_query(spec))
    files = client.fetch(res, path=spec["path"], progress=False)
    print(json.dumps({{"files": len(files), "errors": len(files.errors)}}))
    """
).format(make_query=textwrap.dedent(inspect.getsource(make_query)))


def spec_of(run, tmp_path):
    # Alternate small url exports (2 files) and url-tar ones (12 files); every fourth run is
    # split into two exports (so one downloads while the next stages).
    if run % 4 == 3:
        channels, minutes, limit = [171, 193, 211, 304], 1, 4
    elif run % 2:
        channels, minutes, limit = [171, 193, 211, 304], 2, None
    else:
        channels, minutes, limit = [171], 1, None
    return {
        "run": run,
        "channels": channels,
        "minutes": minutes,
        "limit": limit,
        "phase": PHASES[run % len(PHASES)],
        "path": str(tmp_path / f"run{run}" / "{file}"),
    }


@pytest.fixture(scope="module")
def server():
    with OfflineJSOC(staging_seconds=0.8) as jsoc:
        yield jsoc


def _reached(phase, calls, base, expected_downloads):
    if phase in ("submission", "staging"):
        return calls["exp_request"] > base["exp_request"]
    if phase == "download":
        return calls["download"] > base["download"]
    return calls["download"] - base["download"] >= expected_downloads


def _delay(phase, rng):
    return {
        # Often before the answer is back: the request is taken but its ID never recorded.
        "submission": rng.uniform(0.0, 0.004),
        "staging": rng.uniform(0.1, 0.7),
        "download": rng.uniform(0.0, 0.005),
        "extraction": rng.uniform(0.0, 0.25),
    }[phase]


def _phases_at_kill(state, first_id, target_dir):
    """
    Where the killed fetch was, read from what it left (the ledger and the target folder): a
    set, as one export may download while the next one stages.
    """
    with Ledger(state) as book:
        entries = [e for e in book.entries() if e.id >= first_id]
        done = {e.id: any(f.state == "done" for f in book.files(e.id)) for e in entries}
    if not entries:
        return {"before submission"}
    phases = set()
    for entry in entries:
        if entry.state == "submitting":
            phases.add("submission")
        elif entry.state == "submitted":
            phases.add("staging")
        elif entry.state == "staged":
            names = [row["filename"] for row in entry.status_body.get("data", ())]
            extracted = target_dir / retrieve.PARTIAL_DIR / entry.requestid / "extracted"
            published = any((target_dir / name).exists() for name in names)
            started = done[entry.id] or published or extracted.exists()
            phases.add("extraction" if started else "download")
    return phases or {"finished"}


def test_kill_9_at_random_points_then_rerun_completes_without_duplicates(server, tmp_path, monkeypatch):
    rng = random.Random(int(os.environ.get("KILL_TEST_SEED", "20140205")))
    state = tmp_path / "state"
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_SERVER", server.url)
    monkeypatch.setenv("JSOC_EMAIL", EMAIL)
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_STATE", str(state))
    monkeypatch.setenv("PARFIVE_HIDE_PROGRESS", "1")
    env = dict(os.environ)
    client = JSOCCutoutClient()
    figures = Counter()
    hit = Counter()
    # Killing from inside the server's export-request handler: the request is taken and the
    # answer never reaches the child (a lost answer), the hardest case for the ledger.
    in_request = {"child": None}
    original_request = server.manager.request

    def request(params):
        answer = original_request(params)
        child = in_request["child"]
        if child is not None and child.poll() is None:
            child.kill()
        return answer

    monkeypatch.setattr(server.manager, "request", request)

    for run in range(RUNS):
        spec = spec_of(run, tmp_path)
        if spec["limit"]:
            monkeypatch.setitem(chunking.RECORD_LIMITS, "AIA", spec["limit"])
        res = client.search(*make_query(spec))
        n_records = len(res)
        jobs = 2 if spec["limit"] else 1
        expected_downloads = jobs if (spec["limit"] or n_records > 8) else n_records

        with Ledger(state) as book:
            first_id = 1 + max((e.id for e in book.entries()), default=0)
        exports_before = set(server.exports)
        base = Counter(server.calls)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(spec)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        killed = False
        if spec["phase"] == "submission" and rng.random() < 0.5:
            in_request["child"] = child
        while child.poll() is None:
            if _reached(spec["phase"], server.calls, base, expected_downloads):
                time.sleep(_delay(spec["phase"], rng))
                if child.poll() is None:
                    child.kill()
                    killed = True
                break
            time.sleep(0.002)
        _, err = child.communicate(timeout=120)
        killed = killed or in_request["child"] is not None
        in_request["child"] = None
        assert killed or child.returncode == 0, err.decode()[-2000:]
        target_dir = Path(spec["path"]).parent
        hit.update(_phases_at_kill(state, first_id, target_dir) if killed else {"not killed"})

        files = client.fetch(res, path=spec["path"], progress=False)

        assert not files.errors, [str(e.exception) for e in files.errors]
        assert len(files) == n_records
        expectation = verify.expectation_from_plan(res.exports[0].plan)
        for path in files:
            assert Path(path).is_file()
            assert retrieve.verify_fits(Path(path)) is None
        assert verify.check_cutouts(list(files), expectation) == []
        assert sorted(p.name for p in target_dir.iterdir() if p.is_file()) == sorted(
            Path(f).name for f in files
        )
        new = [server.exports[r] for r in set(server.exports) - exports_before]
        plans = Counter(e.ds for e in new)
        assert len(plans) == jobs
        assert max(plans.values()) == 1, plans  # one export per planned request, never two
        figures["runs"] += 1
        figures["killed"] += killed
        figures["files verified"] += len(files)
        figures["exports"] += len(new)
        figures["exp_request calls"] += server.calls["exp_request"] - base["exp_request"]
        figures["duplicate exports"] += sum(n - 1 for n in plans.values())
        if spec["limit"]:
            monkeypatch.setitem(chunking.RECORD_LIMITS, "AIA", 15_000)

    print(f"\nkill -9 figures: {dict(figures)}; state at kill: {dict(hit)}")
    assert figures["runs"] == RUNS
    # The kill is timed from the server's view; nearly every child is still at work then.
    assert figures["killed"] >= RUNS // 2
