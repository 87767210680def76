"""A grid two tiles deep in z: its QC verdict follows the alignment, not the overlaps' noise.

A 3 x 3 x 2 grid of small tiles (160 x 160 x 48, 12 % overlap, seed 1) aligned to 0.02 voxel from the
truth was failed by the QC twice over: a diagonal overlap of 34 x 31 x 4 voxels whose correlation one
blob carries had a lower NCC at the true registration than at the stage positions (0.43 against 0.56,
each with a standard error of 0.3: rhapso_core.qc.ncc_error.ncc_fell), and three views placed by
phase-correlation anchors and overlap-affine fits, where points did not match, were called
unconstrained (rhapso_core.qc.solver.solver_metrics). Tolerance: RMS against the truth under 0.1
voxel, and no "fail" among the QC's reasons (warnings for the pairs points could not match stay).
"""

from __future__ import annotations

import pytest

from rhapso_core.synthetic.scoring import score


@pytest.mark.slow
def test_two_layer_grid_aligns_and_its_qc_does_not_fail(prefect_harness, tmp_path):
    from flows.stitch import stitch
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    ds = write_dataset(tmp_path / "data", SyntheticParams(grid=(3, 3, 2), tile_size_xyz=(160, 160, 48), seed=1))
    result = stitch(str(ds.xml), str(tmp_path / "out"), ground_truth=str(ds.ground_truth))
    s = score(ds.ground_truth, result["aligned_xml"])
    assert s.rms_voxels < 0.1, s.summary()
    fails = [r for r in result["qc"]["reasons"] if r["level"] == "fail"]
    assert not fails and result["qc"]["verdict"] in ("pass", "warn"), fails
