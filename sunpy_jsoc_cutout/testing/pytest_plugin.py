"""
pytest fixtures for the offline JSOC (registered as the ``pytest11`` entry point ``sunpy_jsoc_cutout``).

- ``offline_jsoc``: a started `~sunpy_jsoc_cutout.testing.server.OfflineJSOC` with short staging,
  stopped after the test.
- ``jsoc_env``: the same server, with the environment pointing the package (and parfive) at it.

Nothing heavy is imported until a fixture is used.
"""

from __future__ import annotations

import pytest

__all__ = ["jsoc_env", "offline_jsoc"]

#: Staging time of the fixture's server: long enough to see status 2/1, short enough for tests.
FIXTURE_STAGING_SECONDS = 0.5


@pytest.fixture
def offline_jsoc():
    """A started offline JSOC on a free loopback port (staging 0.5 s), stopped after the test."""
    from sunpy_jsoc_cutout.testing.server import OfflineJSOC

    jsoc = OfflineJSOC(staging_seconds=FIXTURE_STAGING_SECONDS).start()
    try:
        yield jsoc
    finally:
        jsoc.stop()


@pytest.fixture
def jsoc_env(offline_jsoc, monkeypatch, tmp_path):
    """
    Point the package at ``offline_jsoc``: ``SUNPY_JSOC_CUTOUT_SERVER``, ``JSOC_EMAIL``
    (``test@example.org``), ``SUNPY_JSOC_CUTOUT_STATE`` (a fresh folder) and
    ``PARFIVE_HIDE_PROGRESS``. Yields the server.
    """
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_SERVER", offline_jsoc.url)
    monkeypatch.setenv("JSOC_EMAIL", "test@example.org")
    monkeypatch.setenv("SUNPY_JSOC_CUTOUT_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("PARFIVE_HIDE_PROGRESS", "1")
    return offline_jsoc
