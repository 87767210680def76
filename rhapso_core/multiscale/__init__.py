"""Multiscale pyramids: mean-downsampled levels written block-wise, NGFF metadata updated."""

from rhapso_core._lazy import lazy_exports
from rhapso_core.multiscale.params import MultiscaleParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.multiscale.downsample": ('downsample_level', 'downsampled_shape', 'mean_downsample', 'plan_level_blocks', 'source_box_for',),
    "rhapso_core.multiscale.metadata": ('MetadataError', 'add_levels_to_attrs', 'add_levels_to_group',),
    "rhapso_core.multiscale.pyramid": ('build_pyramid', 'create_level_array', 'level_plan',),
})

__all__ = [
    "MultiscaleParams",
    "downsampled_shape",
    "mean_downsample",
    "source_box_for",
    "plan_level_blocks",
    "downsample_level",
    "level_plan",
    "create_level_array",
    "build_pyramid",
    "add_levels_to_attrs",
    "add_levels_to_group",
    "MetadataError",
]
