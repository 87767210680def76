"""Threads or Ray for a run: the planner's work and memory against the documented rule
(rhapso_core/executor.py), the overrides, and the planner's per-stage planning it relies on."""

from __future__ import annotations

import pytest

from rhapso_core.config import PipelineParams
from rhapso_core.executor import choose_executor
from rhapso_core.planner import STAGES, plan

FUSION = ("fusion", "multiscale")


def _params(**runtime):
    return PipelineParams(runtime=runtime)


def test_planning_some_stages_equals_the_full_plan(generated):
    """The fusion stages planned alone are the full plan's (the choice of a fusion run uses them)."""
    full = plan(str(generated.xml), cores=2, memory_per_core_gb=4)
    part = plan(str(generated.xml), cores=2, memory_per_core_gb=4, stages=FUSION)
    assert [s.stage for s in full.stages] == list(STAGES)
    assert part.stages == tuple(s for s in full.stages if s.stage in FUSION)
    align = plan(str(generated.xml), cores=2, memory_per_core_gb=4, stages=("matching",))
    assert align.stages == (full.stage("matching"),)
    with pytest.raises(ValueError, match="stages must be some of"):
        plan(str(generated.xml), cores=2, memory_per_core_gb=4, stages=("fuse",))


def test_small_job_runs_in_threads_and_says_why(generated):
    full = plan(str(generated.xml), cores=2, memory_per_core_gb=4, stages=FUSION)
    cpu = sum(s.cpu_seconds for s in full.stages)
    assert 0 < cpu < 30  # the dataset is small: the premise of this test
    c = choose_executor(str(generated.xml), _params(), FUSION, cores=2, memory_bytes=8e9)
    assert not c.use_ray and c.where == "threads of this process"
    assert c.planned_cpu_s == pytest.approx(cpu, rel=1e-9)
    assert "local_threads_max_cpu_s" in c.reason and "--ray" in c.reason
    assert c.line().startswith("tasks run in threads of this process: ")


def test_work_above_the_limit_starts_ray(generated):
    cpu = sum(s.cpu_seconds for s in plan(str(generated.xml), cores=2, memory_per_core_gb=4).stages)
    c = choose_executor(str(generated.xml), _params(local_threads_max_cpu_s=cpu / 2), STAGES, cores=2,
                        memory_bytes=8e9)
    assert c.use_ray and c.where == "a local Ray" and "> runtime.local_threads_max_cpu_s" in c.reason
    # The same limit with only the (cheaper) fusion stages of the same job: threads again.
    fuse_cpu = sum(s.cpu_seconds for s in plan(str(generated.xml), cores=2, memory_per_core_gb=4,
                                                 stages=FUSION).stages)
    assert fuse_cpu < cpu / 2
    assert not choose_executor(str(generated.xml), _params(local_threads_max_cpu_s=cpu / 2), FUSION, cores=2,
                               memory_bytes=8e9).use_ray


def test_tasks_that_do_not_fit_memory_start_ray(generated):
    full = plan(str(generated.xml), cores=2, memory_per_core_gb=4, stages=FUSION)
    task = max(s.memory_per_task_bytes for s in full.stages)
    # Two threads at once need 2 x the largest task, plus the chunk cache they share:
    # 1.5 x does not fit, 2.5 x does.
    cache = PipelineParams().runtime.read_cache_mb * 1024**2
    assert cache > 0
    assert choose_executor(str(generated.xml), _params(), FUSION, cores=2, memory_bytes=1.5 * task + cache).use_ray
    c = choose_executor(str(generated.xml), _params(), FUSION, cores=2, memory_bytes=2.5 * task + cache)
    assert not c.use_ray and c.peak_memory_bytes == pytest.approx(2 * task + cache)
    # Without the cache the same two threads fit in less (2.5 x the task, which the cache
    # alone would exceed: the premise of this check).
    assert 0.5 * task < cache
    assert choose_executor(str(generated.xml), _params(), FUSION, cores=2, memory_bytes=2.5 * task).use_ray
    assert not choose_executor(str(generated.xml), _params(read_cache_mb=0), FUSION, cores=2,
                               memory_bytes=2.5 * task).use_ray


def test_overrides_and_a_running_ray_decide_without_a_plan(generated, tmp_path):
    missing = str(tmp_path / "absent.xml")  # never read: these rules come first
    assert not choose_executor(missing, _params(use_ray=False), FUSION).use_ray
    c = choose_executor(missing, _params(ray_address="ray://head:10001"), FUSION)
    assert c.use_ray and "ray://head:10001" in c.where
    assert choose_executor(missing, _params(local_threads_max_cpu_s=0), FUSION).use_ray
    assert choose_executor(missing, _params(), FUSION, ray_running=True).use_ray
    # A job that cannot be planned keeps the previous default (a local Ray) and says why.
    c = choose_executor(missing, _params(), FUSION)
    assert c.use_ray and "could not be planned" in c.reason
