"""SyntheticParams: defaults are valid, out-of-range values fail naming the parameter."""

import pytest
from pydantic import ValidationError

from rhapso_core.params import StageParams
from rhapso_core.synthetic import SyntheticParams


def test_defaults_are_valid_and_documented():
    p = SyntheticParams()
    assert isinstance(p, StageParams)
    assert p.grid == (3, 2, 1) and p.tile_size_xyz == (256, 256, 64)
    assert p.world_unit_um == min(p.voxel_size_xyz)
    assert SyntheticParams(world_unit="um").world_unit_um == 1.0
    for name, f in SyntheticParams.model_fields.items():
        assert f.description, f"parameter {name} lacks a description"


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"overlap": 0.9}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"grid": (0, 1, 1)}, "grid"),
        ({"grid": (2, 2)}, "grid"),
        ({"tile_size_xyz": (256, 4, 64)}, "tile_size_xyz"),  # z may be 1 plane (2-D mosaics), x and y not
        ({"voxel_size_xyz": (0.5, 0.0, 2.0)}, "voxel_size_xyz"),
        ({"jitter_voxels": (-1.0, 0.0, 0.0)}, "jitter_voxels"),
        ({"jitter_voxels": (40.0, 3.0, 1.0)}, "jitter_voxels"),  # larger than half the 30.7-voxel overlap
        ({"rotation_deg": 45.0}, "rotation_deg"),
        ({"scale_jitter": 0.5}, "scale_jitter"),
        ({"shear": -0.01}, "shear"),
        ({"blob_count": -5}, "blob_count"),
        ({"blob_sigma_um": (3.0, 1.0)}, "blob_sigma_um"),
        ({"blob_amplitude": (10.0, 1.0e6)}, "blob_amplitude"),
        ({"fibre_count": -1}, "fibre_count"),
        ({"background": -1.0}, "background"),
        ({"read_noise": -1.0}, "read_noise"),
        ({"gain": 0.0}, "gain"),
        ({"seed": -1}, "seed"),
        ({"n_levels": 0}, "n_levels"),
        ({"ngff_version": "0.3"}, "ngff_version"),
        ({"chunk_size_xyz": (128, 4, 1)}, "chunk_size_xyz"),  # z chunks of 1 plane are allowed
        ({"interpolation_order": 5}, "interpolation_order"),
        ({"world_unit": "mm"}, "world_unit"),
        ({"blob_densty": 3.0}, "blob_densty"),  # typo: unknown names are refused
    ],
)
def test_out_of_range_raises_with_the_parameter_name(kwargs, name):
    with pytest.raises(ValidationError) as info:
        SyntheticParams(**kwargs)
    assert name in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


def test_assignment_is_validated():
    p = SyntheticParams()
    with pytest.raises(ValidationError, match="overlap"):
        p.overlap = 2.0


def test_single_tile_axis_allows_any_jitter():
    # No neighbour along z, so z jitter is not bounded by the overlap.
    assert SyntheticParams(grid=(2, 2, 1), jitter_voxels=(3.0, 3.0, 50.0)).jitter_voxels[2] == 50.0
