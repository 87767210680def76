"""The stitch flow on a local Ray with a real Prefect API: accuracy, outputs, artifacts, caching."""

from __future__ import annotations

import pytest

import asyncio

import numpy as np

from rhapso_core.io import open_image
from rhapso_core.synthetic.scoring import score


def _task_states(flow_run_ids: list, name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    async def read():
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)),
            )
            return [r.state.name for r in runs]

    return asyncio.run(read())


def _flow_run_ids() -> list:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return [r.id for r in await client.read_flow_runs()]

    return asyncio.run(read())


def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts() if a.key}

    return asyncio.run(read())


@pytest.mark.heavy  # 31 s: stitch on Ray also runs in reliability/test_reliability_worker_kill.py (with kills)
def test_stitch_on_local_ray(prefect_harness, small_dataset, tmp_path):
    from flows.stitch import stitch

    out = tmp_path / "out"
    # A local Ray even for this small job (the default would run it in threads: rhapso_core/executor.py).
    result = stitch(str(small_dataset.xml), str(out), overrides=["runtime.num_cpus=2", "runtime.local_threads_max_cpu_s=0"],
                    ground_truth=str(small_dataset.ground_truth))
    assert result["executor"]["use_ray"] and result["executor"]["where"] == "a local Ray", result["executor"]

    # Alignment accuracy against ground truth (rigid gauge): within 0.5 voxel RMS,
    # and at least 5x better than the nominal stage positions.
    s = score(small_dataset.ground_truth, result["aligned_xml"])
    assert s.rms_voxels < 0.5, s.summary()
    assert s.rms_voxels * 5 < s.nominal_rms_voxels, s.summary()
    # 6 tiles need at least 5 matched pairs to be connected (a 3x2 grid has 7 edge pairs).
    assert all(r["pairs_matched"] >= 5 for r in result["alignment"]["rounds"])

    # The fused OME-Zarr: a pyramid with physical scale and the world origin.
    img = open_image(result["fused"])
    assert img.n_levels > 1
    assert img.unit == "micrometer"
    np.testing.assert_allclose(img.voxel_size_zyx[1:], (0.5, 0.5), rtol=1e-6)
    assert img.read(((0, img.level_shape(0)[0]), (0, 64), (0, 64))).any()
    # ... and a BigStitcher XML that opens it in the input's world frame.
    from rhapso_core.pipeline.preflight import check_dataset

    fused_sd = check_dataset(result["fusion"]["xml"])
    assert len(fused_sd.views()) == 1

    keys = _artifact_keys()
    assert {"detection-points-per-view", "matching-rigid", "solver-affine", "fusion-output", "qc-report",
            "resolved-parameters"} <= keys, keys

    # The QC report is computed from this run's outputs and sits beside the aligned XML.
    from pathlib import Path

    html = Path(result["qc"]["report_uri"])
    assert html.exists() and html.parent == Path(result["aligned_xml"]).parent
    # Every auto parameter was resolved before detection, recorded beside the XML and in the report.
    resolved = Path(result["alignment"]["resolved_params_json"])
    assert resolved.exists() and resolved.parent.parent == Path(result["aligned_xml"]).parent
    assert "detection.dsxy" in result["alignment"]["resolved_parameters"]
    assert "Resolved parameters" in html.read_text()
    assert result["qc"]["verdict"] in ("pass", "warn"), result["qc"]["reasons"]


@pytest.mark.heavy  # 40 s; the detection cache on a re-run is also checked by orchestration/test_kill_resume.py
def test_rerun_skips_cached_detection(prefect_harness, small_dataset, tmp_path):
    from flows.alignment import alignment

    first = alignment(str(small_dataset.xml), str(tmp_path / "a.xml"), overrides=["runtime.num_cpus=2"])
    ids = set(_flow_run_ids())
    second = alignment(str(small_dataset.xml), str(tmp_path / "a.xml"), overrides=["runtime.num_cpus=2"])
    new_ids = list(set(_flow_run_ids()) - ids)
    states = _task_states(new_ids, "detect-t")
    assert states and all(s == "Cached" for s in states), states
    assert first["detection"] == second["detection"]
    a = (tmp_path / "a.xml").read_bytes()
    assert b"rhapso affine solve" in a
