"""A real volume as the specimen: exact sampling geometry and agreement of overlapping tiles."""

import numpy as np
from scipy import ndimage

from rhapso_core import transforms as tf
from rhapso_core.synthetic import (
    SyntheticParams,
    VolumeSpecimen,
    acquire_tile,
    load_tiff_planes,
    render_tile,
    tile_affine_um,
    tile_grid,
)


def test_integer_placement_reproduces_the_volume_exactly(cellfinder_ch0):
    vol = load_tiff_planes(cellfinder_ch0)
    assert vol.shape == (24, 256, 384) and vol.dtype == np.uint16
    vox_xyz = (2.0, 2.0, 5.0)
    spec = VolumeSpecimen(vol, vox_xyz, origin_um=np.zeros(3))
    # A tile whose voxel (0, 0, 0) sits on volume voxel (x=40, y=25, z=3), same voxel size.
    affine_um = tf.translation(np.array([40, 25, 3]) * vox_xyz) @ tf.scaling(vox_xyz)
    for order in (1, 3):
        img = render_tile(spec, affine_um, (100, 80, 20), interpolation_order=order)
        assert np.allclose(img, vol[3:23, 25:105, 40:140], atol=1e-2), f"order {order}: not the volume crop"
    outside = render_tile(spec, tf.translation((-1.0e4, 0.0, 0.0)) @ tf.scaling(vox_xyz), (8, 8, 4))
    assert np.all(outside == 0), "outside the volume reads 0"


def test_real_volume_tiles_agree_in_their_overlap(cellfinder_ch0):
    vol = load_tiff_planes(cellfinder_ch0)
    # Tiles sized to the in-repository crop (256 x 384 x 24); on the whole 510 x 667 x 30 volume with
    # 200 x 160 x 24 tiles the same checks measured alike (true poses >= 0.999, nominal <= 0.96).
    p = SyntheticParams(
        grid=(2, 2, 1), tile_size_xyz=(176, 128, 18), overlap=0.15, voxel_size_xyz=(2.0, 2.0, 5.0),
        world_unit="um", jitter_voxels=(3.0, 3.0, 0.5), rotation_deg=1.0, noise=False, interpolation_order=3,
    )
    spec = VolumeSpecimen.centred_on_grid(vol, (5.0, 2.0, 2.0), p)
    tiles = tile_grid(p)
    imgs = [render_tile(spec, tile_affine_um(t, p), t.size_xyz, p.interpolation_order) for t in tiles]
    for t in tiles:
        lo, hi = tf.view_bounding_box(tile_affine_um(t, p), t.size_xyz)
        assert np.all(lo > spec.origin_um) and np.all(hi < spec.origin_um + spec.extent_um), "tile inside the volume"
    # Real texture varies voxel to voxel, so each tile is smoothed by 1 voxel first: what is compared
    # is where structures are, not how two cubic resamplings treat single-voxel noise.
    smooth = [ndimage.gaussian_filter(im, 1.0) for im in imgs]
    for a, b in [(0, 1), (0, 2), (1, 3), (2, 3)]:
        ta, tb = tiles[a], tiles[b]
        zz, yy, xx = np.meshgrid(*[np.arange(n) for n in imgs[a].shape], indexing="ij")
        va = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], 1).astype(np.float64)

        def corr_at(b_affine):
            vb = tf.apply(tf.invert(b_affine) @ ta.true_affine, va)
            inside = np.all((vb >= 2) & (vb <= np.asarray(tb.size_xyz) - 3), axis=1)
            got = ndimage.map_coordinates(smooth[b].astype(np.float64), vb[inside][:, ::-1].T, order=3)
            assert inside.sum() > 20000
            return np.corrcoef(smooth[a].ravel()[inside], got)[0, 1]

        corr, corr_nominal = corr_at(tb.true_affine), corr_at(tb.nominal_affine)
        # Tolerated: correlation > 0.99 at the true poses (measured >= 0.999); the nominal poses
        # (a few voxels off) must do visibly worse.
        assert corr > 0.99, f"tiles {a} and {b}: correlation {corr}"
        assert corr_nominal < corr - 0.02, f"tiles {a} and {b}: nominal poses agree as well ({corr_nominal})"
    # With noise on, tiles are uint16 camera images of the same volume.
    noisy = acquire_tile(spec, tiles[0], p.model_copy(update={"noise": True}))
    assert noisy.dtype == np.uint16 and abs(noisy.mean() - (imgs[0].mean() + 100.0)) < 1.0
