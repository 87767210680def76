"""BLAS pools held to one thread while a run's tasks run in threads of the command (flows.blas_threads)."""

from __future__ import annotations

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from flows.blas_threads import USER_SETTINGS, one_blas_thread  # noqa: E402
from flows.runtime import ray_session  # noqa: E402
from rhapso_core.config import RuntimeParams  # noqa: E402


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]


@pytest.fixture
def no_user_setting(monkeypatch):
    for k in USER_SETTINGS:
        monkeypatch.delenv(k, raising=False)
    if not _blas_threads():
        pytest.skip("no BLAS pool that threadpoolctl can see")


def test_one_thread_inside_restored_after(no_user_setting):
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # a pool of 2, as on this 2-core machine
        before = _blas_threads()
        with one_blas_thread() as applied:
            assert applied == 1
            assert _blas_threads() == [1] * len(before)
            a = np.arange(9.0).reshape(3, 3)
            assert np.array_equal(a @ a, np.array([[15.0, 18, 21], [42, 54, 66], [69, 90, 111]]))
        assert _blas_threads() == before


def test_user_setting_left_alone(no_user_setting, monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with one_blas_thread() as applied:
            assert applied is None
            assert _blas_threads() == before


def test_threads_runtime_applies_it(no_user_setting):
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with ray_session(RuntimeParams(use_ray=False)):
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == before
