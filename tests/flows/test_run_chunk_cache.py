"""A run's own process keeps decoded chunks for what runs in it, with Ray as without.

With Ray the flow's process still runs steps that read the tiles again and again (parameter
resolution, the image checks and overlap fits, every solve's after-solve check, QC); its
cache is ``runtime.read_cache_mb``, and it ends with the run.
"""

from __future__ import annotations

import pytest

import flows.runtime as runtime_mod
from rhapso_core.config import RuntimeParams
from rhapso_core.io.chunk_cache import active_cache


@pytest.mark.parametrize("use_ray", [False, True], ids=["threads", "ray"])
def test_the_runs_process_keeps_its_chunk_cache(monkeypatch, use_ray):
    joined = []

    def joined_ray(runtime):  # stands for a Ray session (started or joined): not this test's subject
        joined.append(runtime.use_ray)
        yield

    monkeypatch.setattr(runtime_mod, "_ray_session", joined_ray)
    assert active_cache() is None
    with runtime_mod.ray_session(RuntimeParams(use_ray=use_ray, read_cache_mb=8)):
        cache = active_cache()
        assert cache is not None and cache.stats().max_bytes == 8 * 1024**2
    assert active_cache() is None, "the cache ends with the run"
    assert joined == ([True] if use_ray else [])


def test_no_cache_when_asked_for_none(monkeypatch):
    monkeypatch.setattr(runtime_mod, "_ray_session", lambda runtime: iter([None]))
    with runtime_mod.ray_session(RuntimeParams(use_ray=True, read_cache_mb=0)):
        assert active_cache() is None
