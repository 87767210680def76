"""Tiles cut from one given image (a 2-D plane or a 3-D stack) with known offsets.

A mosaic of real texture and noise with exact ground truth: tile ``(i, j)`` is the image's box
at its true integer offset; the XML places it at a nominal stage position that differs from the
truth by a uniform random error (sub-voxel parts included). A 2-D image gives single-plane
tiles (z size 1). Positions are in the image's voxels (x, y, z) and the XML's world frame is
the image's finest-axis voxel (calibration ``voxel_size / min(voxel_size)``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhapso_core import transforms as tf

__all__ = ["MosaicTruth", "write_mosaic", "mosaic_error"]


@dataclass(frozen=True)
class MosaicTruth:
    """True and nominal tile origins (x, y, z image voxels) per view, and where the XML is."""

    xml: Path
    true_origin_xyz: dict[tuple[int, int], tuple[float, float, float]]
    nominal_origin_xyz: dict[tuple[int, int], tuple[float, float, float]]
    voxel_size_xyz: tuple[float, float, float]

    def save(self, path: str | os.PathLike) -> None:
        d = {"xml": str(self.xml), "voxel_size_xyz": list(self.voxel_size_xyz),
             "views": [{"timepoint": v[0], "setup": v[1], "true": list(self.true_origin_xyz[v]),
                        "nominal": list(self.nominal_origin_xyz[v])} for v in sorted(self.true_origin_xyz)]}
        Path(path).write_text(json.dumps(d, indent=1))


def write_mosaic(
    out_dir: str | os.PathLike,
    image_zyx: np.ndarray,
    grid_xy: tuple[int, int],
    tile_xy: tuple[int, int],
    overlap: float,
    stage_error_xyz: tuple[float, float, float],
    voxel_size_xyz: tuple[float, float, float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    noise_sigma: float = 0.0,
) -> MosaicTruth:
    """Cut a ``grid_xy`` mosaic of ``tile_xy`` tiles (full depth) from ``image_zyx`` and write it.

    ``image_zyx``: (z, y, x) or (y, x); ``overlap``: nominal fraction shared by neighbours;
    ``stage_error_xyz``: nominal positions are off the truth by a uniform +-error per axis, rounded
    to the voxel, plus a uniform +-0.5 voxel part in x and y (image voxels; z: only where the image
    has more than one plane). Raises ValueError when
    the image is too small for the grid plus the errors. ``noise_sigma``: Gaussian noise (image
    counts) added to each tile independently, as two exposures of the same region differ.
    """
    from rhapso_core.io import write_ome_zarr
    from rhapso_core.spimdata import ViewSetup, ViewTransform, ZarrImageLoader, make_spimdata, save_xml

    img = np.asarray(image_zyx)
    if img.ndim == 2:
        img = img[None]
    nz, ny, nx = img.shape
    tx, ty = tile_xy
    step = np.array([tx, ty]) * (1.0 - overlap)
    rng = np.random.default_rng(seed)
    err = np.asarray(stage_error_xyz, dtype=np.float64)
    margin = np.ceil(err[:2]).astype(int) + 1
    need = margin * 2 + np.round(step * (np.array(grid_xy) - 1)).astype(int) + [tx, ty]
    if need[0] > nx or need[1] > ny:
        raise ValueError(f"image {nx}x{ny} (x, y) is too small for {grid_xy} tiles of {tile_xy} with these errors")
    vox = np.asarray(voxel_size_xyz, dtype=np.float64)
    cal = tf.scaling(vox / vox.min())
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    setups, regs, paths, true, nominal = [], {}, {}, {}, {}
    for j in range(grid_xy[1]):
        for i in range(grid_xy[0]):
            s = j * grid_xy[0] + i
            base = margin + np.round(step * [i, j]).astype(int)
            jit = rng.uniform(-err[:2], err[:2])
            # Truth: the grid position moved by a random integer error; nominal: the grid position plus a
            # random sub-voxel part, so the correction to find has both.
            o = base + np.round(jit).astype(int)
            o = np.clip(o, 0, [nx - tx, ny - ty])
            tile = img[:, o[1]:o[1] + ty, o[0]:o[0] + tx]
            if noise_sigma > 0:
                noisy = tile.astype(np.float64) + rng.normal(0.0, noise_sigma, tile.shape)
                if np.issubdtype(tile.dtype, np.integer):
                    info = np.iinfo(tile.dtype)
                    noisy = np.clip(np.round(noisy), info.min, info.max)
                tile = noisy.astype(tile.dtype)
            name = f"tile_{i}_{j}"
            write_ome_zarr(str(root / "images.ome.zarr" / f"{name}.zarr"), tile, tuple(vox[::-1]),
                           n_levels=3 if min(tx, ty) >= 128 else 2,
                           scale_factors_zyx=[(1, 2, 2)] * (2 if min(tx, ty) >= 128 else 1),
                           chunks_zyx=(max(1, min(nz, 64)), 128, 128), overwrite=True)
            z_err = rng.uniform(-err[2], err[2]) if nz > 1 else 0.0
            nom = np.array([base[0] + rng.uniform(-0.5, 0.5), base[1] + rng.uniform(-0.5, 0.5), z_err])
            true[(0, s)] = (float(o[0]), float(o[1]), 0.0)
            nominal[(0, s)] = tuple(float(v) for v in nom)
            setups.append(ViewSetup(id=s, name=name, size=(tx, ty, nz), voxel_size=tuple(vox), voxel_unit="µm",
                                    attributes={"illumination": 0, "channel": 0, "tile": s, "angle": 0}))
            world = (cal @ np.r_[nom, 1.0])[:3]
            regs[(0, s)] = (ViewTransform("Translation to Regular Grid", tf.translation(world)),
                            ViewTransform("calibration", cal))
            paths[(0, s)] = f"{name}.zarr"
    sd = make_spimdata(setups=setups, registrations=regs,
                       image_loader=ZarrImageLoader.from_paths("images.ome.zarr", paths, root_type="relative"),
                       timepoints=(0,), base_path=".")
    xml = root / "dataset.xml"
    save_xml(sd, str(xml))
    truth = MosaicTruth(xml, true, nominal, tuple(float(v) for v in vox))
    truth.save(root / "mosaic_truth.json")
    return truth


def mosaic_error(truth: MosaicTruth, solved) -> dict[str, float]:
    """RMS and max error (finest-axis voxels) of solved tile origins against the truth.

    ``solved``: a SpimData or XML path. The common translation (the gauge) is removed first;
    each tile's origin is its voxel (0, 0, 0) mapped to the world. Also reports the nominal error.
    """
    from rhapso_core.spimdata import SpimData, load_xml

    sd = solved if isinstance(solved, SpimData) else load_xml(str(solved))
    vox = np.asarray(truth.voxel_size_xyz)
    cal = vox / vox.min()
    views = sorted(truth.true_origin_xyz)
    t = np.array([np.asarray(truth.true_origin_xyz[v]) * cal for v in views])

    def err(p):
        d = p - t
        d -= d.mean(axis=0)
        e = np.linalg.norm(d, axis=1)
        return float(np.sqrt(np.mean(e**2))), float(e.max())

    got = np.array([sd.view_to_world(v)[:3, 3] for v in views])
    nom = np.array([np.asarray(truth.nominal_origin_xyz[v]) * cal for v in views])
    (rms, mx), (nrms, nmx) = err(got), err(nom)
    return {"rms": rms, "max": mx, "nominal_rms": nrms, "nominal_max": nmx}
