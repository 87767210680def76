"""Block-wise affine fusion of views into one volume (pure computation + zarr writes).

Typical use::

    grid = make_output_grid(views, params.voxel_size, params.bounding_box, params.isotropic)
    for unit in plan_work_units(grid.shape_zyx, params, write_unit(array)):
        fuse_to_zarr(views, grid, params, array, blocks=unit)   # one task per unit
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.fusion.params import OVERLAP_STRATEGIES, FusionParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.fusion.blocks": ('group_blocks', 'plan_blocks', 'write_unit',),
    "rhapso_core.fusion.fuse": ('choose_level', 'fuse_block', 'source_box',),
    "rhapso_core.fusion.geometry": ('FusionGeometryError', 'FusionView', 'OutputGrid', 'make_output_grid', 'output_to_view',),
    "rhapso_core.fusion.resume": ('BlockMarkers', 'write_blocks',),
    "rhapso_core.fusion.writer": ('fuse_to_zarr',),
})

__all__ = [
    "FusionParams",
    "OVERLAP_STRATEGIES",
    "FusionView",
    "OutputGrid",
    "FusionGeometryError",
    "make_output_grid",
    "output_to_view",
    "plan_blocks",
    "group_blocks",
    "plan_work_units",
    "write_unit",
    "choose_level",
    "source_box",
    "fuse_block",
    "fuse_to_zarr",
    "write_blocks",
    "BlockMarkers",
]


def plan_work_units(out_shape_zyx, params: FusionParams, chunk_size_zyx):
    """Blocks of ``params.block_size`` grouped into tasks of ``block_size * block_scale``.

    Parameters
    ----------
    out_shape_zyx : (3,) ints
        Output shape (z, y, x).
    params : FusionParams
        ``block_size`` and ``block_scale`` (x, y, z).
    chunk_size_zyx : (3,) ints
        The array's write unit (:func:`write_unit`).

    Returns
    -------
    list of list of Box
        One list of chunk-aligned blocks per task.
    """
    from rhapso_core.fusion.blocks import aligned_block_size, group_blocks, plan_blocks

    bs = aligned_block_size(params.block_size[::-1], chunk_size_zyx)
    unit = [b * s for b, s in zip(bs, params.block_scale[::-1])]
    return group_blocks(plan_blocks(out_shape_zyx, bs, chunk_size_zyx), unit)
