"""Shared values of the orchestration tests (a uniquely named module: `import conftest` is ambiguous)."""

from __future__ import annotations

from pathlib import Path

#: The dev preset detects at dsxy=4 / dsz=2, too coarse for 128 x 128 x 32 tiles
#: (about 30 points per tile, no pair matches); full resolution on one core each.
DEV_OVERRIDES = ["detection.dsxy=2", "detection.dsz=1", "runtime.num_cpus=1"]


def write_tiny_dataset(root: Path):
    """A 2x2 grid of 128x128x32 tiles, 20 % overlap, dense blobs; known true poses.

    Blob density 1500 / 10^6 um^3 (5x the default) gives about 190 points per tile
    at dsxy=2, so every one of the 4 overlapping pairs matches.
    """
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    return write_dataset(root, SyntheticParams(grid=(2, 2, 1), tile_size_xyz=(128, 128, 32), overlap=0.2,
                                               n_levels=2, seed=7, blob_density=1500.0))
