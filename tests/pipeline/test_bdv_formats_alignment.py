"""The same generated tiles as OME-Zarr, BDV HDF5 (legacy int16 and partitioned), BDV N5 and
BigStitcher 2.x zarr XML align to the same transforms.

Runs detection -> matching -> rigid solve in-process (the functions the tasks run) on
each copy. The copies hold the same pixels at every pyramid level, so any difference
in the solved affines is a reader's fault: tolerance 1e-6 (world units) per affine
entry. The original's solve is also checked against ground truth (RMS < 0.5 voxel,
as tests/pipeline/test_pipeline_accuracy.py) so the comparison is not between
equally broken results.
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.config import PipelineParams
from rhapso_core.pipeline import detect, match, solve
from rhapso_core.spimdata import load_xml
from rhapso_core.synthetic.bdv_export import export_dataset
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.scoring import score
from rhapso_core.synthetic.write import write_dataset

COPIES = {
    "bdv.hdf5": dict(fmt="bdv.hdf5", legacy_int16=True),
    "bdv.hdf5-partitioned": dict(fmt="bdv.hdf5", partitioned=True),
    "bdv.n5": dict(fmt="bdv.n5"),
    "bigstitcher2-zarr": dict(fmt="bdv.multimg.zarr"),
}


def _align(xml: str, work, p: PipelineParams) -> dict:
    store = str(work / "ip.zarr")
    for plan in detect.plan_views(xml, p.detection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))
    m, s = p.round_params("rigid")
    records = [match.match_pair(xml, store, a, b, "beads", m) for a, b in match.plan_pairs(xml)]
    assert any(r.ok for r in records), f"{xml}: no pair matched"
    out = str(work / "rigid.xml")
    solve.solve_dataset(xml, store, "beads", s, out)
    sd = load_xml(out)
    return {v: sd.view_to_world(v) for v in sd.views()}, out


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    params = SyntheticParams(grid=(2, 2, 1), tile_size_xyz=(160, 160, 48), chunk_size_xyz=(80, 80, 24), overlap=0.25,
                             seed=5, rotation_deg=0.5)
    paths = write_dataset(root / "orig", params)
    work = root / "orig-run"
    work.mkdir()
    affines, solved = _align(str(paths.xml), work, PipelineParams())
    result = score(paths.ground_truth, solved, gauge="rigid")
    assert result.rms_voxels < 0.5, result.summary()
    return root, paths, affines


@pytest.mark.parametrize("name", list(COPIES))
def test_copy_aligns_like_the_ome_zarr_original(original, name):
    root, paths, want = original
    kw = dict(COPIES[name])
    xml = export_dataset(paths.xml, root / name, kw.pop("fmt"), chunk_zyx=(24, 64, 64), **kw)
    work = root / f"{name}-run"
    work.mkdir()
    got, _ = _align(str(xml), work, PipelineParams())
    assert set(got) == set(want)
    worst = max(float(np.abs(got[v] - want[v]).max()) for v in want)
    assert worst <= 1e-6, f"{name}: solved affines differ from the OME-Zarr original by up to {worst:g}"
