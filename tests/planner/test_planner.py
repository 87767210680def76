"""The planner: task counts equal what the pipeline plans; sizes and bytes follow from the XML alone."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.config import PipelineParams
from rhapso_core.planner import DEFAULT_THROUGHPUTS, load_throughputs, plan
from rhapso_core.spimdata import load_xml

XML_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xml"


def _largest_fixture() -> Path:
    """The loadable fixture XML with the most voxels (the exaSPIM one, about 130 TB)."""
    best, best_n = None, -1.0
    for f in sorted(XML_FIXTURES.rglob("*.xml")):
        try:
            sd = load_xml(str(f))
            n = sum(float(np.prod(sd.setup_of(v).size)) for v in sd.views())
        except Exception:  # fixtures of other loaders / without sizes or registrations
            continue
        if n > best_n:
            best, best_n = f, n
    assert best is not None, "the exaSPIM fixture loads"
    return best


def _boxes_overlap(a, b) -> bool:
    return bool(np.all(np.maximum(a[0], b[0]) <= np.minimum(a[1], b[1])))


def test_largest_fixture_from_xml_alone():
    xml = _largest_fixture()
    sd = load_xml(str(xml))
    views = sd.views()
    # Chunks as large as a view: one detection task per view, countable by hand below.
    one_chunk = PipelineParams().model_copy(update={
        "detection": PipelineParams().detection.model_copy(update={"max_chunk_voxels": 10**18})})
    rep = plan(str(xml), cores=560, memory_per_core_gb=8.0, params=one_chunk)
    sizes = [np.asarray(sd.setup_of(v).size, dtype=np.float64) for v in views]
    # Input bytes are exact: uint16 voxels of every ViewSetup (no image data is read).
    assert rep.input_bytes == pytest.approx(2 * sum(np.prod(s) for s in sizes), rel=1e-12)
    assert rep.n_views == len(views)
    # One region (the whole view), chunks_per_bound=1 and unbounded chunks -> one task per view.
    assert rep.stage("detection").tasks == len(views)
    # With the default max_chunk_voxels, huge views are cut so each task's memory stays bounded
    # (about 3x the chunk's float32 size plus halo and process baseline; 128*512*512 voxels here).
    bounded = plan(str(xml), cores=560, memory_per_core_gb=8.0)
    assert bounded.stage("detection").tasks > len(views)
    assert bounded.stage("detection").memory_per_task_bytes < 3e9
    # Pairs: an independent brute-force box test (same timepoint, world boxes touching).
    boxes = {v: transforms.view_bounding_box(sd.view_to_world(v), sd.setup_of(v).size) for v in views}
    expected_pairs = sum(1 for a, b in itertools.combinations(views, 2)
                         if a[0] == b[0] and _boxes_overlap(boxes[a], boxes[b]))
    rounds = len(PipelineParams().alignment.rounds)
    # The flows submit a round's pairs in at most 4 batches per worker slot (560 cores).
    assert rep.stage("matching").tasks == rounds * min(expected_pairs, 4 * 560), "batches x rounds"
    assert rep.stage("solve").tasks == rounds
    # Fusion writes every output voxel once (uint16) and reads no more than the input.
    fus = rep.stage("fusion")
    assert fus.bytes_written > 0 and fus.bytes_read <= rep.input_bytes * (1 + 1e-9)
    for s in rep.stages:
        assert s.wall_seconds > 0 and s.memory_per_task_bytes > 0, s
    assert "detection" in rep.table() and "total" in rep.table()


def test_more_cores_never_slower_and_memory_limits_concurrency():
    xml = _largest_fixture()
    params = PipelineParams(detection={"chunks_per_bound": 64, "dsxy": 4, "dsz": 4})
    walls = [plan(str(xml), n, 1000.0, params).wall_seconds for n in (1, 16, 560)]
    assert walls[0] >= walls[1] >= walls[2], walls
    roomy = plan(str(xml), 560, 1000.0, params).stage("detection")
    assert roomy.concurrency == min(560, roomy.tasks), "memory is no limit at 1 TB per core"
    # A quarter of one task's memory per core: only cores / 4 tasks fit at once.
    tight = plan(str(xml), 560, roomy.memory_per_task_bytes / 1e9 / 4, params).stage("detection")
    assert tight.concurrency == 560 // 4, tight.concurrency
    assert tight.wall_seconds > roomy.wall_seconds


@pytest.mark.parametrize("detection, alignment, fusion", [
    ({}, {}, {}),
    ({"chunks_per_bound": 5}, {"pair_mode": "all"}, {"block_size": (32, 32, 32), "chunks": (32, 32, 16)}),
    ({"overlap_only": True, "chunks_per_bound": 3}, {}, {"block_size": (64, 64, 32), "block_scale": (2, 1, 1),
                                                         "chunks": (32, 32, 32), "isotropic": True}),
])
def test_task_counts_equal_the_pipelines_plans(generated, tmp_path, detection, alignment, fusion):
    from rhapso_core.pipeline import detect, fuse, match

    p = PipelineParams(detection=detection, alignment=alignment, fusion=fusion)
    xml = str(generated.xml)
    rep = plan(xml, cores=4, memory_per_core_gb=2.0, params=p)
    det_plans = detect.plan_views(xml, p.detection)
    assert rep.stage("detection").tasks == sum(len(pl.tasks) for pl in det_plans)
    pairs = match.plan_pairs(xml, p.alignment.pair_mode, p.alignment.group_by)
    from tasks.matching import batch_pairs

    assert rep.stage("matching").tasks == len(batch_pairs(pairs, 4)) * len(p.alignment.rounds), "4 cores"
    fplan = fuse.plan_fusion(xml, str(tmp_path / "fused.ome.zarr"), p.fusion)
    assert rep.stage("fusion").tasks == len(fplan.units), "fusion work units"
    n_out = float(np.prod(fplan.shape_zyx))
    assert rep.stage("fusion").bytes_written == pytest.approx(2 * n_out), "uint16 output voxels"


def test_overlap_only_detection_counts_other_tiles_only_with_two_channels(tmp_path):
    """A tile's other channel covers it whole and is no overlap: planner and pipeline agree on that."""
    from rhapso_core.pipeline import detect
    from rhapso_core.synthetic import SyntheticParams, write_dataset

    ds = write_dataset(tmp_path / "data", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(96, 64, 24), channels=2,
                                                          n_levels=1, chunk_size_xyz=(32, 32, 24), blob_count=20,
                                                          fibre_count=0, overlap=0.25))
    p = PipelineParams(detection={"overlap_only": True, "dsxy": 2, "dsz": 1, "min_intensity": 0,
                                  "max_intensity": 1000})
    plans = detect.plan_views(str(ds.xml), p.detection)
    # a box per overlapping view of the other tile (its two channels), none for the own tile's other channel
    assert {len(pl.regions_xyz) for pl in plans} == {2}
    assert plan(str(ds.xml), cores=2, memory_per_core_gb=2.0, params=p).stage("detection").tasks == \
        sum(len(pl.tasks) for pl in plans)


def test_throughputs_file_and_overrides(tmp_path, generated):
    f = tmp_path / "throughputs.json"
    f.write_text('{"fusion_voxels_per_s": 1e9, "measured_on": "small", "date": "today", "other": 3}')
    tp, src = load_throughputs(f)
    assert tp["fusion_voxels_per_s"] == 1e9 and "small" in src
    assert tp["matching_s_per_pair"] == DEFAULT_THROUGHPUTS["matching_s_per_pair"]
    slow = plan(str(generated.xml), 2, 4.0, throughputs={"fusion_voxels_per_s": 1e3}).stage("fusion")
    fast = plan(str(generated.xml), 2, 4.0, throughputs={"fusion_voxels_per_s": 1e9}).stage("fusion")
    # CPU time is exactly inversely proportional to the throughput given.
    assert slow.cpu_seconds == pytest.approx(fast.cpu_seconds * 1e6, rel=1e-9)
    with pytest.raises(ValueError, match="unknown key"):
        plan(str(generated.xml), 2, 4.0, throughputs={"fusion_speed": 1.0})
    with pytest.raises(ValueError, match="cores"):
        plan(str(generated.xml), 0, 4.0)


def test_cluster_cost_is_cores_times_wall_times_price(generated):
    rep = plan(str(generated.xml), 8, 4.0, price_per_core_hour=0.05)
    assert rep.core_hours_held == pytest.approx(8 * rep.wall_seconds / 3600, rel=1e-12)
    assert rep.cost == pytest.approx(0.05 * rep.core_hours_held, rel=1e-12)
    # The work itself never exceeds what the cluster is held for.
    assert 0 < rep.core_hours_busy <= rep.core_hours_held
    assert "core-hours held" in rep.table() and "per core-hour" in rep.table()
    assert rep.to_dict()["cost"] == rep.cost
    assert plan(str(generated.xml), 8, 4.0).cost is None
    with pytest.raises(ValueError, match="price_per_core_hour"):
        plan(str(generated.xml), 8, 4.0, price_per_core_hour=-1.0)


def test_content_based_fusion_plans_its_filters(generated):
    """content_based adds the weights' filtering to the fusion's CPU (rhapso_core.cost.
    content_filter_taps over content_filter_taps_per_s; the estimate itself is checked against
    fusion in tests/fusion/test_content_cost.py) and its halo to a task's memory."""
    base = PipelineParams()
    content = base.model_copy(update={"fusion": base.fusion.model_copy(update={"overlap_strategy": "content_based"})})
    tp = {"fusion_voxels_per_s": 1e7}
    avg = plan(str(generated.xml), 2, 8.0, params=base, throughputs=tp).stage("fusion")
    slow = plan(str(generated.xml), 2, 8.0, params=content,
                throughputs=dict(tp, content_filter_taps_per_s=1e9)).stage("fusion")
    fast = plan(str(generated.xml), 2, 8.0, params=content,
                throughputs=dict(tp, content_filter_taps_per_s=2e9)).stage("fusion")
    filtering = slow.cpu_seconds - avg.cpu_seconds
    assert filtering > 0
    # The filtering's share is exactly inversely proportional to the tap rate given.
    assert fast.cpu_seconds - avg.cpu_seconds == pytest.approx(filtering / 2, rel=1e-9)
    assert slow.memory_per_task_bytes > avg.memory_per_task_bytes
