"""A slice of the accuracy matrix (bench/bench_accuracy.py) with default parameters, in CI.

Two cells the fixed defaults used to get wrong or barely right: real mouse-brain texture in
small tiles with 15 % overlap (``real-ch0``; here cut from the repository's crop of the volume,
so its 3 x 2 tiles are 136 x 128 x 20 instead of 220 x 200 x 26: measured 0.120 voxel RMS,
the bench's whole-volume cell 0.124), the same texture with 1 % affine truth (``real-affine``;
on the crop 0.085 voxel RMS, 0.407 without the overlap-affine fits that the affine round
measures: rhapso_core.pipeline.overlap_affine_links), and thin tiles with z voxels 5x the xy voxels
(``aniso5``, heavy: RHAPSO_HEAVY_TESTS=1; the whole matrix is bench/bench_accuracy.py). Each is generated, aligned in-process with every parameter on ``auto`` and
scored against ground truth. Tolerance: 0.3 voxel RMS (the issue's target), and the
result must beat the stage positions by a factor of 4.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_accuracy as ba  # noqa: E402

TOLERANCE = 0.3


@pytest.mark.parametrize("name", ["real-ch0", "real-affine", pytest.param("aniso5", marks=pytest.mark.heavy)])
def test_default_parameters_reach_the_target(name, tmp_path, cellfinder_ch0):
    cell = next(c for c in ba.CELLS if c.name == name)
    if cell.volume:
        assert cell.volume == "ch0", "the repository holds a crop of ch0 only"
        # the crop's own tiles: 136 x 128 x 20 fit it as 220 x 200 x 26 fit the whole volume
        cell = dataclasses.replace(cell, volume=cellfinder_ch0.name,
                                   synth={**cell.synth, "tile_size_xyz": (136, 128, 20)})
    r = ba.run_cell(cell, tmp_path, modes=("auto",), volume_root=cellfinder_ch0.parent)
    auto = r["auto"]
    assert auto["rms"] <= TOLERANCE, r
    assert auto["rms"] < r["nominal_rms"] / 4, r
    # the resolution is recorded; what it costs beside the alignment is a benchmark figure
    # (bench/bench_accuracy.py), not a timed test: on a fresh checkout it includes numba's
    # first compilation of the detection kernels.
    assert r["resolved"]["detection.dsxy"] >= 1
