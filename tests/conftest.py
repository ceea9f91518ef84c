"""Shared test set-up. The offline JSOC fixtures come from sunpy_jsoc_cutout.testing.pytest_plugin."""

import gc

import pytest
from sunpy.net import Fido


@pytest.fixture(autouse=True)
def _collect_garbage_in_the_main_thread():
    # parfive's Downloader.download(), which Fido.fetch always calls, leaves an unclosed event
    # loop in a reference cycle. If the cyclic collector happens to run in one of the offline
    # JSOC's threads, the loop's __del__ tries to remove its signal handlers there and fails.
    # Collecting only here, in the main thread, keeps that upstream leak from making tests flaky.
    gc.disable()
    yield
    gc.enable()
    gc.collect()


@pytest.fixture
def fido_search():
    """
    ``Fido.search`` that raises the client's error whichever sunpy runs.

    sunpy 7 lets an error of a client's search propagate; sunpy 8 catches it and returns it
    in the result's ``errors``.
    """

    def search(*query):
        result = Fido.search(*query)
        for error in getattr(result, "errors", None) or []:
            raise error
        return result

    return search
