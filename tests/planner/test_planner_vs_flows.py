"""``rhapso plan`` predicts what the flows submit: tasks per stage and the memory hint of each.

The stage flows' bodies run as written (``.fn``: no Prefect API, no Ray); every task they
``.submit`` is recorded with the Ray options in force at that moment (``remote_options``), the
planning tasks run for real and the work tasks (DoG, fusion, downsampling, matching) return
results of a fixed size (DoG: ``POINTS`` points a chunk; fusion, downsampling and matching:
nothing), since what they compute is tested elsewhere and not what is compared here.
Tolerance: none. Counts are equal and memory per task is the largest hint plus the planner's
worker-process baseline, exactly. Matching memory depends on the points detection finds, which
the planner estimates: there the flow's hint is checked against the points stored and the
planner's against its estimate, through the one formula
(:func:`rhapso_core.cost.matching_batch_memory`).
"""

from __future__ import annotations

import numpy as np
import pytest
from prefect_ray.context import RemoteOptionsContext

from rhapso_core.config import PipelineParams
from rhapso_core.detection import InterestPoints
from rhapso_core.pipeline.dataset import load_dataset
from rhapso_core.pointstore import PointStore
from rhapso_core.cost import matching_batch_memory, reserved_memory
from rhapso_core.planner import plan

CORES = 3
POINTS = 7  # per detection chunk, far apart: the merge keeps them all


def _points(xml, sha, view, chunk, params) -> InterestPoints:
    """``POINTS`` points spread along the chunk's core box diagonal (full-resolution x y z)."""
    (z0, z1), (y0, y1), (x0, x1) = chunk.core_box
    f = np.asarray(params.factors_zyx()[::-1], float)
    t = (np.arange(POINTS)[:, None] + 0.5) / POINTS
    loc = (np.array([x0, y0, z0]) + t * np.array([x1 - x0, y1 - y0, z1 - z0])) * f
    return InterestPoints(np.arange(POINTS), loc, np.full(POINTS, 100.0, np.float32), np.full(POINTS, 1.0, np.float32))


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _Recorder:
    """Stands in for a Prefect task: ``.submit`` is recorded (with its Ray memory hint)."""

    def __init__(self, log: list, name: str, run):
        self.log, self.name, self.run = log, name, run

    def submit(self, *args, **kwargs):
        opts = RemoteOptionsContext.get().current_remote_options
        self.log.append((self.name, opts.get("memory")))
        # as Prefect does, futures among the arguments are passed as their results
        args = [[x.result() if isinstance(x, _Done) else x for x in a] if isinstance(a, list) else a for a in args]
        return _Done(self.run(*args, **kwargs))


@pytest.fixture
def submitted(monkeypatch):
    import flows.artifacts
    import rhapso_core.cost
    import tasks.detection
    import tasks.fusion
    import tasks.matching

    log: list = []
    # Ray's 64 MiB floor would hide every hint of this small dataset: compare the formulas themselves.
    monkeypatch.setattr(rhapso_core.cost, "MIN_TASK_MEMORY", 0)
    monkeypatch.setattr(flows.artifacts, "wait_with_progress", lambda futures, what: [f.result() for f in futures])
    monkeypatch.setattr(flows.artifacts, "points_table", lambda *a, **k: None)
    monkeypatch.setattr(tasks.detection, "run_chunk", _Recorder(log, "detect", _points))
    monkeypatch.setattr(tasks.detection, "store_points", _Recorder(log, "store", tasks.detection.store_points.fn))
    monkeypatch.setattr(tasks.detection, "plan_views", tasks.detection.plan_views.fn)
    monkeypatch.setattr(tasks.fusion, "fuse_unit", _Recorder(log, "fuse", lambda *a: 0))
    monkeypatch.setattr(tasks.fusion, "downsample", _Recorder(log, "downsample", lambda *a: 0))
    for name in ("plan_fusion", "plan_pyramid", "finish_pyramid", "fused_xml"):
        monkeypatch.setattr(tasks.fusion, name, getattr(tasks.fusion, name).fn)
    monkeypatch.setattr(tasks.matching, "match_pairs", _Recorder(log, "match", lambda xml, st, batch, *a: [None] * len(batch)))
    return log


def _stage(log, name):
    hints = [m for n, m in log if n == name]
    return len(hints), max((h for h in hints if h is not None), default=None)


@pytest.mark.parametrize("overrides", [
    {"detection": {"chunks_per_bound": 3}, "fusion": {"block_size": (64, 64, 32), "chunks": (32, 32, 16)}},
    {"detection": {"max_chunk_voxels": 8192, "dsxy": 1}, "alignment": {"pair_mode": "all"},
     "fusion": {"block_size": (32, 32, 32), "block_scale": (2, 1, 1), "chunks": (32, 32, 32),
                "multiscale": {"target_block_size_mb": 0.05}}},
])
def test_planner_predicts_the_submitted_tasks_and_memory_hints(generated, tmp_path, submitted, overrides):
    from flows.alignment import detection_stage
    from flows.batched_matching import match_in_batches
    from flows.fusion import fusion_stage
    from tasks.matching import plan_pairs

    det = {"dsxy": 2, "dsz": 1, "sigma": 1.8, "threshold": 0.01, "min_intensity": 0, "max_intensity": 1000,
           **overrides.get("detection", {})}
    p = PipelineParams(detection=det, alignment=overrides.get("alignment", {}), fusion=overrides.get("fusion", {}))
    xml = str(generated.xml)
    rep = plan(xml, cores=CORES, memory_per_core_gb=4.0, params=p)
    base = rep.throughputs["process_baseline_mb"] * 1e6  # the worker process, which Ray does not reserve

    detection_stage.fn(xml, str(tmp_path / "ip.zarr"), p.detection)
    n, hint = _stage(submitted, "detect")
    assert hint > 0 and n > 1 and rep.stage("detection").tasks == n
    assert rep.stage("detection").memory_per_task_bytes == base + hint

    pairs = plan_pairs.fn(xml, p.alignment.pair_mode, p.alignment.group_by)
    for r in p.alignment.rounds:
        match_in_batches(xml, str(tmp_path / "ip.zarr"), pairs, "beads", p.matching, CORES, r)
    n, hint = _stage(submitted, "match")
    assert rep.stage("matching").tasks == n and n < len(pairs) * len(p.alignment.rounds), "batches, not pairs"
    stored = {v: len(PointStore(str(tmp_path / "ip.zarr")).read_points(v, "beads").ids) for pair in pairs for v in pair}
    assert min(stored.values()) >= POINTS
    assert hint == reserved_memory(max(matching_batch_memory([(stored[a], stored[b])]) for a, b in pairs))
    n_views = len(load_dataset(xml).views())
    estimate = rep.stage("detection").bytes_written / 32 / n_views  # the planner's points per view
    assert rep.stage("matching").memory_per_task_bytes == base + reserved_memory(matching_batch_memory([(estimate, estimate)]))

    fusion_stage.fn(xml, str(tmp_path / "fused.ome.zarr"), p.fusion)
    n, hint = _stage(submitted, "fuse")
    assert n > 1 and rep.stage("fusion").tasks == n
    assert rep.stage("fusion").memory_per_task_bytes == base + hint
    n, hint = _stage(submitted, "downsample")
    assert n >= 1 and rep.stage("multiscale").tasks == n
    assert rep.stage("multiscale").memory_per_task_bytes == base + hint
