"""Detection -> matching -> solve on generated image datasets, scored against ground truth.

Runs the stage functions in-process (no Prefect, no Ray): the same code the tasks run.
Tolerance: 0.5 voxel RMS over tile corners and overlap centres after removing the
gauge (issue 5), and every edge-sharing tile pair matched (issue 4).
"""

from __future__ import annotations

import pytest

from rhapso_core.config import PipelineParams
from rhapso_core.pipeline import detect, match, solve
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.scoring import score
from rhapso_core.synthetic.write import write_dataset

CASES = {
    # truth kind: (synthetic pose parameters, alignment rounds, score gauge)
    "translation": (dict(), ["translation"], "translation"),
    "rigid": (dict(rotation_deg=0.6), ["rigid"], "rigid"),
    "affine": (dict(rotation_deg=0.4, scale_jitter=0.004, shear=0.003), ["rigid", "affine"], "affine"),
}


def edge_pairs(nx: int, ny: int) -> set[tuple[int, int]]:
    """Setup ids of tiles sharing an edge in an nx x ny grid (x fastest)."""
    out = set()
    for y in range(ny):
        for x in range(nx):
            s = y * nx + x
            if x + 1 < nx:
                out.add((s, s + 1))
            if y + 1 < ny:
                out.add((s, s + nx))
    return out


@pytest.mark.parametrize("kind", list(CASES))
def test_alignment_recovers_ground_truth(kind, tmp_path):
    poses, rounds, gauge = CASES[kind]
    paths = write_dataset(tmp_path / "data", SyntheticParams(grid=(3, 2, 1), seed=11, **poses))
    p = PipelineParams()
    xml, store = str(paths.xml), str(tmp_path / "ip.zarr")
    for plan in detect.plan_views(xml, p.detection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))
    for i, r in enumerate(rounds):
        m, s = p.round_params(r)
        records = [match.match_pair(xml, store, a, b, "beads", m) for a, b in match.plan_pairs(xml)]
        matched = {(rec.view_a[1], rec.view_b[1]) for rec in records if rec.ok}
        missing = edge_pairs(3, 2) - matched
        assert not missing, f"{kind}/{r}: edge pairs not matched: {sorted(missing)}"
        out = str(tmp_path / f"{i}-{r}.xml")
        solve.solve_dataset(xml, store, "beads", s, out)
        xml = out
    result = score(paths.ground_truth, xml, gauge=gauge)
    assert result.rms_voxels < 0.5, result.summary()
    assert result.rms_voxels < result.nominal_rms_voxels / 4, result.summary()
