"""``rhapso plan`` predicts what the flows submit: tasks per stage and the memory hint of each.

The stage flows' bodies run as written (``.fn``: no Prefect API, no Ray); every task they
``.submit`` is recorded with the Ray options in force at that moment (``remote_options``;
``bench/bench_planner_vs_flows.py``'s recorder, which runs the same check on the benchmark datasets), the
planning tasks run for real and the work tasks (DoG, fusion, downsampling, matching) return
results of a fixed size (DoG: ``POINTS`` points a chunk; fusion, downsampling and matching:
nothing), since what they compute is tested elsewhere and not what is compared here.
Tolerance: none. Counts are equal and memory per task is the largest hint plus the planner's
worker-process baseline, exactly. Matching memory depends on the points detection finds: planned
before detection it is an estimate (and the plan says so); planned on the store detection
filled it equals the flow's hint. The solve is not submitted (it runs in the flow's process):
its count is compared, its memory is the planner's estimate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rhapso_core.config import PipelineParams
from rhapso_core.pipeline.dataset import load_dataset
from rhapso_core.pipeline.retry import RetryParams
from rhapso_core.pointstore import PointStore
from rhapso_core.cost import matching_batch_memory, reserved_memory
from rhapso_core.planner import plan

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_planner_vs_flows as bpf  # noqa: E402  (the recorder the benchmark check uses too)

CORES = 3
POINTS = 7  # per detection chunk, far apart: the merge keeps them all


@pytest.fixture
def submitted():
    # Ray's 64 MiB floor would hide every hint of this small dataset: compare the formulas themselves.
    with bpf.recording(bpf.fixed_points(POINTS), min_task_memory=0) as log:
        yield log


_stage = bpf.submitted


@pytest.mark.parametrize("overrides", [
    {"detection": {"chunks_per_bound": 3}, "fusion": {"block_size": (64, 64, 32), "chunks": (32, 32, 16)}},
    {"detection": {"max_chunk_voxels": 8192, "dsxy": 1}, "alignment": {"pair_mode": "all"},
     "fusion": {"block_size": (32, 32, 32), "block_scale": (2, 1, 1), "chunks": (32, 32, 32),
                "multiscale": {"target_block_size_mb": 0.05}}},
])
def test_planner_predicts_the_submitted_tasks_and_memory_hints(generated, tmp_path, submitted, overrides):
    from flows.alignment import detection_stage, match_and_solve_stage
    from flows.fusion import fusion_stage
    from tasks.matching import plan_pairs

    det = {"dsxy": 2, "dsz": 1, "sigma": 1.8, "threshold": 0.01, "min_intensity": 0, "max_intensity": 1000,
           **overrides.get("detection", {})}
    p = PipelineParams(detection=det, alignment=overrides.get("alignment", {}), fusion=overrides.get("fusion", {}))
    xml = str(generated.xml)
    store = str(tmp_path / "ip.zarr")
    rep = plan(xml, cores=CORES, memory_per_core_gb=4.0, params=p, points_store=store)
    base = rep.throughputs["process_baseline_mb"] * 1e6  # the worker process, which Ray does not reserve

    detection_stage.fn(xml, store, p.detection)
    n, hint = _stage(submitted, "detect")
    assert hint > 0 and n > 1 and rep.stage("detection").tasks == n
    assert rep.stage("detection").memory_per_task_bytes == base + hint

    pairs = plan_pairs(xml, p.alignment.pair_mode, p.alignment.group_by)  # the task body (patched in)
    no_retry = RetryParams(enabled=False, phase_link=False, image_check=False)
    for r in p.alignment.rounds:
        m, s = p.round_params(r)
        match_and_solve_stage.fn(xml, store, "beads", m, s, str(tmp_path / f"{r}.xml"), r, p.alignment.pair_mode,
                                 list(p.alignment.group_by), CORES, pair_retry=no_retry, alignment=p.alignment)
    n, hint = _stage(submitted, "match")
    assert rep.stage("matching").tasks == n and n < len(pairs) * len(p.alignment.rounds), "batches, not pairs"
    assert rep.stage("solve").tasks == len([1 for name, _ in submitted if name == "solve"])
    # Planned before detection: the estimate, and the plan says so.
    n_views = len(load_dataset(xml).views())
    estimate = rep.stage("detection").bytes_written / 32 / n_views  # the planner's points per view
    assert rep.stage("matching").memory_per_task_bytes == base + reserved_memory(matching_batch_memory([(estimate, estimate)]))
    assert "memory estimated from" in rep.stage("matching").note
    # Planned on the points detection stored (a re-run, or `rhapso plan` after detection): the flow's hint.
    stored = {v: len(PointStore(store).read_points(v, "beads").ids) for pair in pairs for v in pair}
    assert min(stored.values()) >= POINTS
    assert hint == reserved_memory(max(matching_batch_memory([(stored[a], stored[b])]) for a, b in pairs))
    after = plan(xml, cores=CORES, memory_per_core_gb=4.0, params=p, points_store=store)
    assert after.stage("matching").memory_per_task_bytes == base + hint
    assert "points stored in" in after.stage("matching").note
    for name in ("detection", "solve", "fusion", "multiscale"):
        assert (after.stage(name).tasks, after.stage(name).memory_per_task_bytes) == \
            (rep.stage(name).tasks, rep.stage(name).memory_per_task_bytes), name

    fusion_stage.fn(xml, str(tmp_path / "fused.ome.zarr"), p.fusion)
    n, hint = _stage(submitted, "fuse")
    assert n > 1 and rep.stage("fusion").tasks == n
    assert rep.stage("fusion").memory_per_task_bytes == base + hint
    n, hint = _stage(submitted, "downsample")
    assert n >= 1 and rep.stage("multiscale").tasks == n
    assert rep.stage("multiscale").memory_per_task_bytes == base + hint


def test_auto_parameters_are_planned_as_the_flow_resolves_them(generated, tmp_path):
    """Default (``auto``) parameters: the plan resolves them from the images as ``run_alignment`` does, so
    every stage's tasks and memory per task equal the submitted ones (the benchmark check's comparison,
    ``bench/bench_planner_vs_flows.py``, on this small dataset; tolerance: none)."""
    rows = bpf.compare("generated", str(generated.xml), tmp_path, cores=CORES, detect=bpf.fixed_points(POINTS),
                       min_task_memory=0)
    assert [r.stage for r in rows] == ["detection", "matching", "solve", "fusion", "multiscale"]
    assert all(r.tasks > 0 for r in rows), rows
    assert all(r.agrees for r in rows), bpf.table(rows)
