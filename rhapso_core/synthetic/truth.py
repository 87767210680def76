"""Ground truth of a synthetic dataset: true and nominal poses per view, and where the blobs are.

Stored as one JSON file (``ground_truth.json``) next to the dataset's XML::

    {"format": "rhapso-synthetic-ground-truth", "version": 1,
     "world_unit_um": 0.5, "xml": "dataset.xml", "blobs_csv": "blobs.csv",
     "params": {...SyntheticParams...},
     "views": [{"timepoint": 0, "setup": 0, "name": "tile_x_0000_y_0000_z_0000",
                "grid_index": [0, 0, 0], "size_xyz": [...], "voxel_size_xyz": [...],
                "true_affine": [[4 x 4]], "nominal_affine": [[4 x 4]],
                "jitter_world": [...], "image": "tiles.ome.zarr/tile_x_0000_y_0000_z_0000.ome.zarr"}, ...]}

Affines are 4x4 row-major nested lists mapping view voxel (x, y, z) to the XML world
frame, whose unit is ``world_unit_um`` micrometres. Paths are relative to the JSON file.
A view with a signal gain holds ``"intensity_gain": g`` (the vignetting is in ``params``).
A view of a warped dataset also holds ``"warp": {"amplitude_xyz": [...], "periods": k,
"phase": rad, "depth": voxels}`` (:class:`~rhapso_core.synthetic.warp.ZWarp`); its true
mapping is then ``true_affine @ warp(v)``, see :meth:`ViewTruth.voxel_to_world`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.synthetic.geometry import TileSpec
from rhapso_core.synthetic.warp import WarpError, ZWarp

__all__ = ["ViewTruth", "GroundTruth", "GroundTruthError", "ViewBlobs", "view_blob_centres", "FORMAT"]

FORMAT = "rhapso-synthetic-ground-truth"
_NUMBER_LIST = re.compile(r"\[\s*([-+0-9eE.,\s]+?)\s*\]")
VERSION = 1


class GroundTruthError(ValueError):
    """A ground-truth file is malformed."""


@dataclass(frozen=True)
class ViewTruth:
    """One view's true and nominal pose (affines: view voxel xyz -> world units), and its warp if any."""

    timepoint: int
    setup: int
    size_xyz: tuple[int, int, int]
    voxel_size_xyz: tuple[float, float, float]
    true_affine: np.ndarray
    nominal_affine: np.ndarray
    name: str = ""
    grid_index: tuple[int, int, int] = (0, 0, 0)
    jitter_world: np.ndarray = field(default_factory=lambda: np.zeros(3))
    image: str | None = None
    warp: ZWarp | None = None
    intensity_gain: float = 1.0  # signal gain of the view (rhapso_core.synthetic.intensity); 1 = none

    @property
    def view_id(self) -> tuple[int, int]:
        return (self.timepoint, self.setup)

    def voxel_to_world(self, points_xyz: np.ndarray) -> np.ndarray:
        """Exact true world positions (world units) of view voxels ``(N, 3)`` (xyz), warp included."""
        p = np.asarray(points_xyz, dtype=np.float64).reshape(-1, 3)
        return tf.apply(self.true_affine, p if self.warp is None else self.warp.apply(p))

    def world_to_voxel(self, world_xyz: np.ndarray) -> np.ndarray:
        """View voxels ``(N, 3)`` (xyz) that image world points (world units); inverse of :meth:`voxel_to_world`."""
        u = tf.apply(tf.invert(self.true_affine), np.asarray(world_xyz, dtype=np.float64).reshape(-1, 3))
        return u if self.warp is None else self.warp.invert(u)

    @classmethod
    def from_tile(cls, tile: TileSpec, timepoint: int = 0, image: str | None = None) -> "ViewTruth":
        return cls(
            timepoint=timepoint,
            setup=tile.setup,
            size_xyz=tile.size_xyz,
            voxel_size_xyz=tile.voxel_size_xyz,
            true_affine=np.array(tile.true_affine),
            nominal_affine=np.array(tile.nominal_affine),
            name=tile.name,
            grid_index=tile.grid_index,
            jitter_world=np.array(tile.jitter_world),
            image=image,
            warp=tile.warp,
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            "timepoint": self.timepoint,
            "setup": self.setup,
            "name": self.name,
            "grid_index": list(self.grid_index),
            "size_xyz": list(self.size_xyz),
            "voxel_size_xyz": list(self.voxel_size_xyz),
            "true_affine": np.asarray(self.true_affine).tolist(),
            "nominal_affine": np.asarray(self.nominal_affine).tolist(),
            "jitter_world": np.asarray(self.jitter_world).tolist(),
            "image": self.image,
        }
        if self.warp is not None:  # absent for unwarped views, so older files stay as they were
            d["warp"] = self.warp.to_dict()
        if self.intensity_gain != 1.0:  # likewise absent without a gain
            d["intensity_gain"] = float(self.intensity_gain)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "ground truth") -> "ViewTruth":
        try:
            true_affine = np.asarray(d["true_affine"], dtype=np.float64)
            nominal_affine = np.asarray(d["nominal_affine"], dtype=np.float64)
            if true_affine.shape != (4, 4) or nominal_affine.shape != (4, 4):
                raise GroundTruthError(f"{where}: view {d.get('setup')} affines must be 4x4")
            return cls(
                timepoint=int(d["timepoint"]),
                setup=int(d["setup"]),
                size_xyz=tuple(int(v) for v in d["size_xyz"]),  # type: ignore[arg-type]
                voxel_size_xyz=tuple(float(v) for v in d["voxel_size_xyz"]),  # type: ignore[arg-type]
                true_affine=true_affine,
                nominal_affine=nominal_affine,
                name=str(d.get("name", "")),
                grid_index=tuple(int(v) for v in d.get("grid_index", (0, 0, 0))),  # type: ignore[arg-type]
                jitter_world=np.asarray(d.get("jitter_world", (0.0, 0.0, 0.0)), dtype=np.float64),
                image=d.get("image"),
                warp=None if d.get("warp") is None else ZWarp.from_dict(d["warp"], f"{where}: view {d.get('setup')} warp"),
                intensity_gain=float(d.get("intensity_gain", 1.0)),
            )
        except WarpError as exc:
            raise GroundTruthError(str(exc)) from None
        except KeyError as exc:
            raise GroundTruthError(f"{where}: a view lacks the field {exc.args[0]!r}") from None


@dataclass(frozen=True)
class GroundTruth:
    """Everything needed to score a registration of a synthetic dataset."""

    views: tuple[ViewTruth, ...]
    world_unit_um: float
    params: dict[str, Any] = field(default_factory=dict)
    xml: str | None = None
    blobs_csv: str | None = None
    root: Path | None = None  # folder the relative paths are relative to

    def view(self, view_id: tuple[int, int]) -> ViewTruth:
        for v in self.views:
            if v.view_id == tuple(view_id):
                return v
        raise KeyError(f"ground truth has no view {tuple(view_id)}")

    @property
    def finest_voxel_um(self) -> float:
        """Smallest voxel size over all views and axes (um): the unit of the 'voxels' figures."""
        return float(min(min(v.voxel_size_xyz) for v in self.views))

    def path(self, relative: str | None) -> Path | None:
        if relative is None:
            return None
        p = Path(relative)
        return p if p.is_absolute() or self.root is None else self.root / p

    def blobs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blob list ``(centres_um (N, 3) xyz, sigma_um, amplitude)``; empty if there is none."""
        path = self.path(self.blobs_csv)
        if path is None:
            return np.zeros((0, 3)), np.zeros(0), np.zeros(0)
        from rhapso_core.synthetic.specimen import load_blobs_csv

        return load_blobs_csv(path)

    def view_blobs(
        self, view_id: tuple[int, int], margin_voxels: float | Sequence[float] = 0.0, min_amplitude: float = 0.0
    ) -> "ViewBlobs":
        """Blob centres inside one view, in its voxel frame (see :func:`view_blob_centres`)."""
        return view_blob_centres(self.view(view_id), self.world_unit_um, *self.blobs(), margin_voxels, min_amplitude)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "world_unit_um": self.world_unit_um,
            "xml": self.xml,
            "blobs_csv": self.blobs_csv,
            "params": self.params,
            "views": [v.to_dict() for v in self.views],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "ground truth", root: Path | None = None) -> "GroundTruth":
        if d.get("format") != FORMAT:
            raise GroundTruthError(f"{where}: not a synthetic ground truth (format {d.get('format')!r})")
        if "views" not in d or "world_unit_um" not in d:
            raise GroundTruthError(f"{where}: needs 'views' and 'world_unit_um'")
        return cls(
            views=tuple(ViewTruth.from_dict(v, where) for v in d["views"]),
            world_unit_um=float(d["world_unit_um"]),
            params=dict(d.get("params") or {}),
            xml=d.get("xml"),
            blobs_csv=d.get("blobs_csv"),
            root=root,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically (temp file then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        text = json.dumps(self.to_dict(), indent=1)
        # One line per list of numbers (an affine row, a size) keeps the file readable.
        text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
        tmp.write_text(text)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GroundTruth":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise GroundTruthError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(d, where=str(path), root=path.parent)


@dataclass(frozen=True)
class ViewBlobs:
    """Blobs seen by one view.

    Attributes
    ----------
    index : (N,) int ndarray
        Row of each blob in the blob list.
    centres_xyz : (N, 3) ndarray
        Exact blob centres in the view's voxel frame (view voxels, xyz; voxel centres on integers).
    sigma_um, amplitude : (N,) ndarray
        Blob sigma (um) and peak brightness (photons).
    """

    index: np.ndarray
    centres_xyz: np.ndarray
    sigma_um: np.ndarray
    amplitude: np.ndarray

    @property
    def centres_zyx(self) -> np.ndarray:
        return self.centres_xyz[:, ::-1].copy()


def view_blob_centres(
    view: ViewTruth,
    world_unit_um: float,
    centres_um: np.ndarray,
    sigma_um: np.ndarray,
    amplitude: np.ndarray,
    margin_voxels: float | Sequence[float] = 0.0,
    min_amplitude: float = 0.0,
) -> ViewBlobs:
    """The blobs whose centre lies inside a view (the view's voxel frame, exact).

    Parameters
    ----------
    view : ViewTruth
        The view, with its true affine (view voxel -> world units) and warp.
    world_unit_um : float
        Length of one world unit (um).
    centres_um, sigma_um, amplitude : ndarray
        The blob list, e.g. from :func:`rhapso_core.synthetic.specimen.load_blobs_csv`.
    margin_voxels : float or (3,) sequence, default 0
        Keep only centres at least this far inside ``[0, size - 1]`` (view voxels, xyz);
        negative values also keep blobs just outside.
    min_amplitude : float, default 0
        Keep only blobs at least this bright (photons).
    """
    centres_um = np.asarray(centres_um, dtype=np.float64).reshape(-1, 3)
    if view.warp is None:
        c = tf.apply(tf.invert(tf.scaling([world_unit_um] * 3) @ view.true_affine), centres_um)
    else:
        c = view.world_to_voxel(centres_um / world_unit_um)
    margin = np.broadcast_to(np.asarray(margin_voxels, dtype=np.float64), (3,))
    hi = np.asarray(view.size_xyz, dtype=np.float64) - 1.0 - margin
    inside = np.all((c >= margin) & (c <= hi), axis=1) & (np.asarray(amplitude) >= min_amplitude)
    idx = np.nonzero(inside)[0]
    return ViewBlobs(index=idx, centres_xyz=c[idx], sigma_um=np.asarray(sigma_um)[idx], amplitude=np.asarray(amplitude)[idx])
