"""Where a run's tasks go: threads of the flow's own process, or Ray.

Starting a local Ray costs a run a fixed 10-15 s on the 2-core machine of
``docs/benchmarks.md`` ("Per-flow-run overhead": ``ray.init`` about 10 s, then each worker
process imports the project and loads the compiled kernels before its first task, and
``ray.shutdown`` 1-2 s), whatever the data. On a small job that is most of the run. So a
run with no Ray cluster to join runs its tasks in threads of the flow process when the
planner (:func:`rhapso_core.planner.plan`, from the XML alone) says the job is small and
fits this machine's memory:

* planned CPU work of the stages the run will execute <= ``runtime.local_threads_max_cpu_s``
  (default 30 core-seconds). Why 30: threads give up at most the parallelism the GIL
  takes away. In the worst case (every task holding the GIL all the time; the kernels and
  codecs release it, so real runs lose much less) a job of W core-seconds on N cores takes
  W in threads against W / N + S on Ray (S its start-up). Threads are never slower while
  W (1 - 1/N) <= S, i.e. W <= 2 S = 20-30 s on 2 cores (S = 10-15 s); on more cores the bound
  is S N / (N - 1) >= S, so 30 s loses at most about 15 s there, in that worst case only;
* and the largest task's memory (the planner's, the same hint the flows give Ray) times the
  threads that run at once, plus the decoded-chunk cache those threads share
  (``runtime.read_cache_mb``), fits the memory available now.

Otherwise, and whenever ``runtime.ray_address`` names a cluster or Ray is already running
in this process, tasks go to Ray as before; ``runtime.use_ray=false`` (``--no-ray``) always
means threads and ``runtime.local_threads_max_cpu_s=0`` (``--ray``) always a local Ray.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

__all__ = ["ExecutorChoice", "available_memory_bytes", "choose_executor"]

THREADS = "threads of this process"
LOCAL_RAY = "a local Ray"


@dataclass(frozen=True)
class ExecutorChoice:
    """The decision and why, as the run reports it.

    Attributes
    ----------
    use_ray : bool
        True: tasks go to Ray (a local one or ``ray_address``); False: threads of this process.
    where : str
        Where, in words ("threads of this process", "a local Ray", ...).
    reason : str
        One line naming the rule that decided (and the parameter that overrides it).
    planned_cpu_s : float or None
        The planner's CPU work of the run's stages (core-seconds), when it was consulted.
    peak_memory_bytes : float or None
        Largest task's memory times the threads that would run at once, plus their shared
        chunk cache (``runtime.read_cache_mb``), when consulted.
    """

    use_ray: bool
    where: str
    reason: str
    planned_cpu_s: float | None = None
    peak_memory_bytes: float | None = None

    def line(self) -> str:
        return f"tasks run in {self.where}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


def available_memory_bytes() -> float:
    """Memory available to new allocations now (bytes): psutil's ``available`` when
    installed, else physical memory."""
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def choose_executor(
    xml_uri: str,
    params,
    stages: tuple[str, ...],
    *,
    ray_running: bool = False,
    cores: int | None = None,
    memory_bytes: float | None = None,
) -> ExecutorChoice:
    """Threads or Ray for a run of ``stages`` (planner stage names) on ``xml_uri``.

    Parameters
    ----------
    xml_uri : str
        The run's input XML (read for sizes and positions only).
    params : PipelineParams
        The run's parameters (``params.runtime`` decides first; the rest shape the plan).
    stages : tuple of str
        The planner stages the run executes (:data:`rhapso_core.planner.STAGES`).
    ray_running : bool
        Ray is already initialised in this process (a caller's session): joined, not replaced.
    cores, memory_bytes : optional
        This machine's cores and available memory (default: ``runtime.num_cpus`` or the
        machine's cores; :func:`available_memory_bytes`).
    """
    rt = params.runtime
    if not rt.use_ray:
        return ExecutorChoice(False, THREADS, "runtime.use_ray is false (--no-ray)")
    if rt.ray_address:
        return ExecutorChoice(True, f"the Ray cluster at {rt.ray_address}", "runtime.ray_address")
    if ray_running:
        return ExecutorChoice(True, "the Ray already running in this process", "joined, not replaced")
    limit = rt.local_threads_max_cpu_s
    if limit <= 0:
        return ExecutorChoice(True, LOCAL_RAY, "runtime.local_threads_max_cpu_s is 0 (--ray)")
    from rhapso_core.planner import plan

    cores = int(cores or rt.num_cpus or os.cpu_count() or 1)
    memory = float(memory_bytes if memory_bytes is not None else available_memory_bytes())
    try:
        report = plan(xml_uri, cores=cores, memory_per_core_gb=max(memory / cores / 1e9, 1e-3), params=params,
                      stages=stages)
    except Exception as exc:  # noqa: BLE001 - a plan is an estimate; the run reports its own errors
        return ExecutorChoice(True, LOCAL_RAY, f"the job could not be planned ({exc})")
    cpu = float(sum(s.cpu_seconds for s in report.stages))
    task_mem = max((s.memory_per_task_bytes for s in report.stages if s.tasks), default=0.0)
    threads = max(1, min(cores, max((s.tasks for s in report.stages), default=1)))
    peak = task_mem * threads + rt.read_cache_mb * 1024**2  # the threads' shared chunk cache
    if cpu > limit:
        return ExecutorChoice(True, LOCAL_RAY, f"planned work {cpu:.0f} core-s > runtime.local_threads_max_cpu_s "
                                    f"{limit:g}", cpu, peak)
    if peak > memory:
        return ExecutorChoice(True, LOCAL_RAY, f"{threads} tasks at once need {peak / 1e9:.1f} GB, "
                                    f"{memory / 1e9:.1f} GB available", cpu, peak)
    return ExecutorChoice(False, THREADS, f"planned work {cpu:.1f} core-s <= runtime.local_threads_max_cpu_s {limit:g} "
                                          f"(--ray starts Ray anyway), {peak / 1e9:.1f} of {memory / 1e9:.1f} GB "
                                          "available", cpu, peak)
