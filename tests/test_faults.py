"""
Fault tolerance end to end: the offline JSOC injects faults (HTTP 500s, resets, cut bodies,
429s, truncated and corrupted files, status 6, malicious tars) and the package still completes,
with every file verified, or reports what it could not do.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames
from sunpy.net import Fido
from sunpy.net import attrs as a

from sunpy_jsoc_cutout import jsoc
from sunpy_jsoc_cutout.jsoc import JSOCConnection, JSOCError
from sunpy_jsoc_cutout.retrieve import PARTIAL_DIR, fetch_export, verify_fits
from sunpy_jsoc_cutout.testing.exports import CGI_FAULTS, DOWNLOAD_FAULTS, MALICIOUS_MEMBERS

START = "2014-02-05T08:00:00"
CENTRE = SkyCoord(
    -200 * u.arcsec, 150 * u.arcsec, frame=frames.Helioprojective(observer="earth", obstime=START)
)
TWO_CHANNELS = a.jsoc_cutout.Wavelength(171 * u.AA, 193 * u.AA)
PATCH = (
    "im_patch,t_start=2014-02-05T08:00:00,t_stop=2014-02-05T08:02:00,t=1,r=0,c=0,"
    "locunits=arcsec,boxunits=pixels,t_ref=2014-02-05T08:00:00,x=-200,y=100,width={w},height={h}"
)
FMT = "aia.lev1_euv_12s.{T_REC:A}.{WAVELNTH}.{segment}"
# Fixed: the draws are seeded, so the same faults hit the same calls on every run.
SEED = 3


def cutout_query(*extra, minutes=2):
    return (
        a.Time(START, f"2014-02-05T08:{minutes:02d}:00"),
        a.jsoc.Series("aia.lev1_euv_12s"),
        a.Sample(1 * u.min),
        a.jsoc_cutout.Cutout(center=CENTRE, width=40 * u.pix, height=30 * u.pix),
        *extra,
    )


@pytest.fixture
def quick_retries(monkeypatch):
    """Backoff and status polls in hundredths of a second, so faults cost no real time."""
    monkeypatch.setattr(jsoc, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(jsoc, "POLL_INTERVALS", (0.1, 0.2))


def spread(rate, kinds):
    """``rate`` of faults, spread evenly over ``kinds``."""
    return {kind: rate / len(kinds) for kind in kinds}


def staged_export(server, *, method="url-tar", width=40, height=30, minutes=1):
    """Submit an export straight to the offline JSOC and wait for it; returns the status-0 body."""
    connection = JSOCConnection(server.url, sleep=lambda s: time.sleep(min(s, 0.1)))
    answer = connection.exp_request(
        ds=f"aia.lev1_euv_12s[2014-02-05T08:00:00Z/{minutes}m@60s][171,193]{{image}}",
        process="n=0|" + PATCH.format(w=width, h=height),
        notify="test@example.org",
        method=method,
        protocol="FITS",
        filenamefmt=FMT,
        sizeratio=0.001,
    )
    body = connection.wait_for_export(answer["requestid"], poll_interval=(0.1,))
    return connection, body


# -- the whole of Fido with 20 % faults on every kind of call ----------------------------------


@pytest.mark.parametrize(("minutes", "method"), [(3, "url"), (5, "url-tar")])
def test_fido_search_and_fetch_complete_with_20_percent_faults_on_every_call(
    jsoc_env, tmp_path, quick_retries, minutes, method
):
    faults = jsoc_env.faults
    faults.seed(SEED + minutes)
    faults.set(
        **spread(0.2, CGI_FAULTS),
        **spread(0.2, DOWNLOAD_FAULTS),
        retry_after=0,
        status6_polls=2,
    )

    res = Fido.search(*cutout_query(TWO_CHANNELS, minutes=minutes))
    files = Fido.fetch(res, path=tmp_path / "out" / "{file}", progress=False)

    assert not files.errors, "\n".join(str(e.exception) for e in files.errors)
    assert len(files) == len(res[0])
    assert all(verify_fits(Path(path)) is None for path in files)
    assert [export.method for export in jsoc_env.exports.values()] == [method]  # one export, no duplicate
    injected = faults.injected
    assert sum(injected[kind] for kind in CGI_FAULTS) > 0
    assert sum(injected[kind] for kind in DOWNLOAD_FAULTS) > 0
    assert injected["status6"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(Path(f).name for f in files)


# -- the malicious tar -------------------------------------------------------------------------


def test_a_malicious_tar_writes_nothing_outside_the_target_and_reports_its_members(jsoc_env, tmp_path):
    absolute = Path(next(name for name in MALICIOUS_MEMBERS if name.startswith("/")))
    absolute.unlink(missing_ok=True)
    jsoc_env.faults.malicious_tar = True
    res = Fido.search(*cutout_query(TWO_CHANNELS, minutes=4))
    files = Fido.fetch(res, path=tmp_path / "out" / "{file}", progress=False)

    assert jsoc_env.faults.injected["malicious_tar"] == 1
    assert len(files) == len(res[0])
    refused = {error.filepath_partial: str(error.exception) for error in files.errors}
    assert sorted(refused) == sorted(MALICIOUS_MEMBERS)
    assert "unsafe path" in refused["../escaped.fits"]
    assert "link to '/etc/passwd'" in refused["./link.fits"]
    assert "device" in refused["./device.fits"]
    assert not (tmp_path / "escaped.fits").exists()
    assert not absolute.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "state"]
    assert all(p.suffix == ".fits" for p in (tmp_path / "out").iterdir())


# -- resume with Range -------------------------------------------------------------------------


def leave_partial(body, target_dir, url, nbytes, server):
    """What an interrupted run leaves behind: the first bytes of the download, in the partial folder."""
    name = url.rsplit("/", 1)[-1]
    served = server.manager.file_for("/" + url.split("/", 3)[3])
    folder = target_dir / PARTIAL_DIR / body["requestid"]
    folder.mkdir(parents=True)
    (folder / name).write_bytes(served.read_bytes()[:nbytes])
    return served.stat().st_size


def test_a_partial_tar_is_continued_with_range_and_a_206(offline_jsoc, tmp_path):
    connection, body = staged_export(offline_jsoc)
    (url,) = connection.export_urls(body)
    size = leave_partial(body, tmp_path, url, 10000, offline_jsoc)
    stats = collections.Counter()
    results = fetch_export(body, [url], lambda name: tmp_path / name, progress=False, stats=stats)
    assert not results.errors
    assert len(results) == len(body["data"])
    assert all(verify_fits(Path(path)) is None for path in results)
    assert stats["resumed"] == 1
    assert stats["downloads"] == 0  # the rest came with the one ranged request
    assert size > 10000


def test_a_partial_file_is_downloaded_from_zero_when_the_server_answers_200(offline_jsoc, tmp_path):
    connection, body = staged_export(offline_jsoc)
    (url,) = connection.export_urls(body)
    leave_partial(body, tmp_path, url, 10000, offline_jsoc)
    offline_jsoc.faults.ignore_range = True
    stats = collections.Counter()
    results = fetch_export(body, [url], lambda name: tmp_path / name, progress=False, stats=stats)
    assert not results.errors
    assert all(verify_fits(Path(path)) is None for path in results)
    assert stats["restarted"] == 1
    assert stats["downloads"] == 1


KILLED_FETCH = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from sunpy_jsoc_cutout.retrieve import fetch_export
    body, url, out = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    fetch_export(body, [url], lambda name: out / name, progress=False)
    """
)


def test_a_download_killed_with_sigkill_leaves_no_file_at_its_final_name_and_is_resumed(
    offline_jsoc, tmp_path
):
    connection, body = staged_export(offline_jsoc, method="url", width=400, height=300, minutes=1)
    url = connection.export_urls(body)[0]
    name = url.rsplit("/", 1)[-1]
    part = tmp_path / PARTIAL_DIR / body["requestid"] / name
    offline_jsoc.faults.chunk_delay = 0.2  # a slow link: the download takes a few seconds
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_FETCH, json.dumps(body), url, str(tmp_path)],
        env={**os.environ, "PARFIVE_HIDE_PROGRESS": "1"},
    )
    try:
        for _ in range(600):  # until the download is under way (bounded; not a timing assertion)
            if part.is_file() and part.stat().st_size > 0:
                break
            if process.poll() is not None:
                pytest.fail("the download finished before it could be interrupted")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (tmp_path / name).exists()
    left = part.stat().st_size
    assert 0 < left < offline_jsoc.manager.file_for("/" + url.split("/", 3)[3]).stat().st_size

    offline_jsoc.faults.chunk_delay = 0
    stats = collections.Counter()
    results = fetch_export(body, [url], lambda n: tmp_path / n, progress=False, stats=stats)
    assert str(tmp_path / name) in list(results)
    assert verify_fits(tmp_path / name) is None
    assert stats["resumed"] == 1


# -- status 6 and 429 --------------------------------------------------------------------------


def test_status_6_right_after_submission_is_waited_out(offline_jsoc):
    offline_jsoc.faults.status6_polls = 3
    connection, body = staged_export(offline_jsoc)
    assert body["status"] == 0
    assert offline_jsoc.faults.injected["status6"] == 3
    assert connection.exp_status(body["requestid"])["status"] == 0  # only the first polls


def test_cgi_429_retry_after_is_honoured(offline_jsoc):
    offline_jsoc.faults.set(cgi_429=1.0, retry_after=3, max_faults=2)
    sleeps = []
    connection = JSOCConnection(offline_jsoc.url, sleep=sleeps.append)
    assert connection.rs_summary("aia.lev1_euv_12s[2014-02-05T08:00:00Z/1m][171]") == 5
    assert offline_jsoc.faults.injected["cgi_429"] == 2
    assert len(sleeps) == 2
    assert min(sleeps) >= 3


def test_download_429_retry_after_is_honoured(offline_jsoc, tmp_path):
    connection, body = staged_export(offline_jsoc)
    offline_jsoc.faults.set(download_429=1.0, retry_after=2, max_faults=1)
    sleeps = []
    results = fetch_export(
        body, connection.export_urls(body), lambda n: tmp_path / n, progress=False, sleep=sleeps.append
    )
    assert not results.errors
    assert offline_jsoc.faults.injected["download_429"] == 1
    assert len(sleeps) == 1
    assert sleeps[0] >= 2


def test_faults_beyond_the_retries_are_reported_not_hidden(offline_jsoc, tmp_path):
    offline_jsoc.faults.cgi_500 = 1.0
    connection = JSOCConnection(offline_jsoc.url, sleep=lambda s: None, retries=2)
    with pytest.raises(JSOCError, match="after 3 attempts"):
        connection.rs_summary("aia.lev1_euv_12s[2014-02-05T08:00:00Z/1m][171]")
    assert connection.retried["HTTP 500"] == 2


def test_an_expired_export_is_status_5_for_the_client(offline_jsoc):
    connection, body = staged_export(offline_jsoc)
    offline_jsoc.retention_seconds = 0
    with pytest.raises(JSOCError, match="status 5") as info:
        connection.wait_for_export(body["requestid"])
    assert info.value.status == 5
