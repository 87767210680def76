"""QC fixtures: one tiny pipeline run (in-process, no Prefect) shared by the report tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Run:
    root: Path
    input_xml: str
    solved_xml: str
    store: str
    fused: str
    ground_truth: str
    pair_records: list
    solver_report: dict


@pytest.fixture(scope="session")
def qc_run(tmp_path_factory) -> Run:
    """A 2 x 2 tile synthetic dataset through detection, matching, affine solve and fusion (~3 s)."""
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, fuse, match, solve
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    root = tmp_path_factory.mktemp("qc_run")
    paths = write_dataset(root / "data", SyntheticParams(
        grid=(2, 2, 1), tile_size_xyz=(128, 128, 32), overlap=0.25, blob_density=1500.0,
        n_levels=2, chunk_size_xyz=(64, 64, 32),
    ))
    p = PipelineParams()
    xml = str(paths.xml)
    out = root / "out"
    store = str(out / "interestpoints.zarr")
    for plan in detect.plan_views(xml, p.detection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))
    m, s = p.round_params("affine")
    records = [match.match_pair(xml, store, a, b, "beads", m).to_dict() for a, b in match.plan_pairs(xml)]
    solved = str(out / "aligned.xml")
    report = solve.solve_dataset(xml, store, "beads", s, solved).to_dict()
    fused = str(out / "fused.ome.zarr")
    plan = fuse.plan_fusion(solved, fused, p.fusion)
    for i in range(len(plan.units)):
        fuse.fuse_unit(solved, plan, i, p.fusion)
    fuse.build_levels(fused, p.fusion)
    return Run(root, xml, solved, store, fused, str(paths.ground_truth), records, report)
