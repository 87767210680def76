"""Write a synthetic dataset: OME-Zarr tiles, a BigStitcher XML with nominal poses, ground truth.

Layout of ``out_dir``::

    dataset.xml             BigStitcher SpimData, loader bdv.multimg.zarr, NOMINAL poses
    images.ome.zarr/        one OME-Zarr multiscale image per tile:
        tile_x_0000_y_0000_z_0000.zarr/0, /1, ...
    blobs.csv               blob list (um, photons) of an analytic specimen
    ground_truth.json       true and nominal poses per view (see :mod:`.truth`), written last

With ``channels``, ``illuminations`` or ``timepoints`` above 1 every tile has one view
per (timepoint, channel, illumination) (see :mod:`.multiview`); image groups are then
named ``tile_..._ch_C_ill_I_tp_T.zarr`` and channel c > 0's blobs go to
``blobs_channel_C.csv``.

The XML holds what a microscope writes: per view a ``calibration`` transform
(voxel size / world unit) and, before it, ``Translation to Regular Grid`` (the
nominal stage position in world units).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhapso_core import transforms as tf
from rhapso_core.synthetic.geometry import TileSpec, tile_grid
from rhapso_core.synthetic.intensity import view_gain
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.multiview import acquire_view, channel_specimen, setup_id, setup_name, views_of
from rhapso_core.synthetic.specimen import AnalyticSpecimen, VolumeSpecimen, make_specimen, save_blobs_csv
from rhapso_core.synthetic.truth import GroundTruth, ViewTruth

__all__ = ["DatasetPaths", "write_dataset", "pyramid_steps", "build_spimdata"]

XML_NAME = "dataset.xml"
TRUTH_NAME = "ground_truth.json"
BLOBS_NAME = "blobs.csv"
IMAGES_ROOT = "images.ome.zarr"
TIMEPOINT = 0
GRID_TRANSFORM_NAME = "Translation to Regular Grid"
CALIBRATION_NAME = "calibration"


@dataclass(frozen=True)
class DatasetPaths:
    """Where :func:`write_dataset` put things (absolute paths)."""

    root: Path
    xml: Path
    ground_truth: Path
    blobs_csv: Path | None
    images_root: Path
    tiles: dict[tuple[int, int], Path]  # (timepoint, setup) -> the tile's OME-Zarr image group


def pyramid_steps(voxel_size_xyz, size_xyz, n_levels: int) -> list[tuple[int, int, int]]:
    """Per-level downsampling steps (z, y, x) that first make voxels near-isotropic.

    An axis is halved when its voxel, doubled, is no coarser than the coarsest axis;
    if none qualifies all axes are halved. An axis already at 1 voxel stays
    (and does not count as the coarsest).
    """
    vox = np.asarray(voxel_size_xyz, dtype=np.float64).copy()
    size = np.asarray(size_xyz, dtype=np.float64).copy()
    steps = []
    for _ in range(n_levels - 1):
        active = size > 1
        coarsest = vox[active].max() if active.any() else 0.0
        halve = active & (vox * 2.0 <= coarsest * (1.0 + 1e-9))
        if not halve.any():
            halve = active
        f = np.where(halve, 2, 1)
        vox *= f
        size = np.ceil(size / f)
        steps.append((int(f[2]), int(f[1]), int(f[0])))
    return steps


def build_spimdata(
    tiles: list[TileSpec],
    image_paths: dict[tuple[int, int], str],
    images_root: str = IMAGES_ROOT,
    params: SyntheticParams | None = None,
):
    """A SpimData (``rhapso_core.spimdata``) with nominal poses and a relative zarr loader.

    With ``params`` the setups are the multiview ones of :func:`~.multiview.views_of`
    (channel / illumination / tile / angle attributes as BigStitcher writes them) and
    every timepoint of ``params`` is listed; without, one setup per tile at timepoint 0.
    """
    from rhapso_core.spimdata import ViewSetup, ViewTransform, ZarrImageLoader, make_spimdata

    params = params or SyntheticParams(channels=1, illuminations=1, timepoints=1)
    setups, registrations = [], {}
    for k, t in enumerate(tiles):
        for c in range(params.channels):
            for i in range(params.illuminations):
                sid = setup_id(k, c, i, params)
                setups.append(ViewSetup(
                    id=sid,
                    name=setup_name(t, c, i, params),
                    size=t.size_xyz,
                    voxel_size=t.voxel_size_xyz,
                    voxel_unit="µm",
                    attributes={"illumination": i, "channel": c, "tile": k, "angle": 0},
                ))
                for tp in range(params.timepoints):
                    registrations[(tp, sid)] = (
                        ViewTransform(GRID_TRANSFORM_NAME, tf.translation(t.stage_world)),
                        ViewTransform(CALIBRATION_NAME, t.calibration),
                    )
    names = {"tile": {k: t.name for k, t in enumerate(tiles)}}
    if params.channels > 1:
        names["channel"] = {c: f"channel {c}" for c in range(params.channels)}
    if params.illuminations > 1:
        names["illumination"] = {0: "left (low x)", 1: "right (high x)"}
    return make_spimdata(
        setups=setups,
        registrations=registrations,
        image_loader=ZarrImageLoader.from_paths(images_root, image_paths, root_type="relative"),
        timepoints=tuple(range(params.timepoints)),
        base_path=".",
        attribute_names=names,
    )


def write_dataset(
    out_dir: str | os.PathLike,
    params: SyntheticParams | None = None,
    specimen: AnalyticSpecimen | VolumeSpecimen | None = None,
    overwrite: bool = False,
) -> DatasetPaths:
    """Image a specimen with a tile grid and write tiles, XML and ground truth.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder (local); created if missing.
    params : SyntheticParams, optional
        Grid, poses, camera and output settings; defaults if None.
    specimen : AnalyticSpecimen or VolumeSpecimen, optional
        What to image; None draws the analytic specimen of ``params``. A real volume
        goes in as :meth:`VolumeSpecimen.centred_on_grid`.
    overwrite : bool, default False
        Replace an existing dataset in ``out_dir``; otherwise one raises ``FileExistsError``.

    Returns
    -------
    DatasetPaths
    """
    from rhapso_core.io import write_ome_zarr
    from rhapso_core.spimdata import save_xml

    params = params or SyntheticParams()
    root = Path(out_dir).resolve()
    truth_path = root / TRUTH_NAME
    xml_path = root / XML_NAME
    if not overwrite and (truth_path.exists() or xml_path.exists() or (root / IMAGES_ROOT).exists()):
        raise FileExistsError(f"{root}: already holds a dataset; pass overwrite=True to replace it")
    root.mkdir(parents=True, exist_ok=True)
    # The truth file marks a complete dataset: remove it before anything else changes.
    truth_path.unlink(missing_ok=True)
    if (root / IMAGES_ROOT).is_dir():
        shutil.rmtree(root / IMAGES_ROOT)  # tiles of an older grid must not linger

    if specimen is None:
        specimen = make_specimen(params)
    specimens = [channel_specimen(params, c, specimen) for c in range(params.channels)]
    tiles = tile_grid(params)
    steps = pyramid_steps(params.voxel_size_xyz, params.tile_size_xyz, params.n_levels)
    chunks_zyx = tuple(params.chunk_size_xyz[::-1])
    image_paths: dict[tuple[int, int], str] = {}
    tile_uris: dict[tuple[int, int], Path] = {}
    views = views_of(tiles, params)
    for view in views:
        name = setup_name(view.tile, view.channel, view.illumination, params)
        if params.timepoints > 1:
            name += f"_tp_{view.timepoint}"
        group = f"{name}.zarr"
        uri = root / IMAGES_ROOT / group
        write_ome_zarr(
            str(uri),
            acquire_view(specimens[view.channel], view, params),
            tuple(view.tile.voxel_size_xyz[::-1]),
            n_levels=params.n_levels,
            scale_factors_zyx=steps or None,
            chunks_zyx=chunks_zyx,
            ngff_version=params.ngff_version,
            overwrite=True,
            name=name,
        )
        image_paths[(view.timepoint, view.setup)] = group
        tile_uris[(view.timepoint, view.setup)] = uri

    blobs_path = None
    if isinstance(specimen, AnalyticSpecimen):
        blobs_path = root / BLOBS_NAME
        save_blobs_csv(blobs_path, specimen)
        for c in range(1, params.channels):  # the other channels' blobs, beside channel 0's
            save_blobs_csv(root / f"blobs_channel_{c}.csv", specimens[c])
    save_xml(build_spimdata(tiles, image_paths, params=params), str(xml_path))

    truth = GroundTruth(
        views=tuple(
            dataclasses.replace(
                ViewTruth.from_tile(v.tile, v.timepoint, f"{IMAGES_ROOT}/{image_paths[(v.timepoint, v.setup)]}"),
                setup=v.setup,
                intensity_gain=view_gain(params.seed, params.tile_gain_spread, v.timepoint, v.setup),
            )
            for v in views
        ),
        world_unit_um=params.world_unit_um,
        params=params.model_dump(mode="json"),
        xml=XML_NAME,
        blobs_csv=BLOBS_NAME if blobs_path else None,
        root=root,
    )
    truth.save(truth_path)
    return DatasetPaths(
        root=root,
        xml=xml_path,
        ground_truth=truth_path,
        blobs_csv=blobs_path,
        images_root=root / IMAGES_ROOT,
        tiles=tile_uris,
    )
