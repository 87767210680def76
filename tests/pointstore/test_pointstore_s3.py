"""The same store and export on s3:// through moto's server (no rename there: marker path).

Ground truth: the data written; comparisons are exact.
"""

from __future__ import annotations

import numpy as np
import pytest

import rhapso_core.pointstore.store as store_mod
from rhapso_core.pointstore import (
    PointsNotFoundError,
    PointStore,
    export_n5,
    read_n5,
)

pytestmark = pytest.mark.s3

A, B = (0, 0), (0, 1)


def test_s3_points_correspondences_and_export(s3_prefix, points_factory):
    prefix, options = s3_prefix
    store = PointStore(f"{prefix}/interestpoints.zarr", storage_options=options, mode="a")
    pa, pb = points_factory(40, 1), points_factory(25, 2)
    for v, p in ((A, pa), (B, pb)):
        store.write_points(v, "beads", p["ids"], p["loc_xyz"], p["intensity"], p["dog"], params="DOG")
    store.write_correspondences(A, B, "beads", [0, 3, 39], [24, 1, 0])
    store.write_correspondences(A, B, "beads", [0, 3], [24, 1])  # re-run replaces

    ro = PointStore(f"{prefix}/interestpoints.zarr", storage_options=options, mode="r")
    got = ro.read_points(A, "beads")
    np.testing.assert_array_equal(got.ids, pa["ids"])
    np.testing.assert_array_equal(got.loc_xyz, pa["loc_xyz"])
    np.testing.assert_array_equal(got.intensity, pa["intensity"])
    np.testing.assert_array_equal(got.dog, pa["dog"])
    assert ro.list_views("beads") == [A, B]
    pairs = ro.read_all_correspondences("beads")
    assert len(pairs) == 1
    np.testing.assert_array_equal(pairs[0].idx_a, [0, 3])
    np.testing.assert_array_equal(pairs[0].ids_b, pb["ids"][[24, 1]])

    out = f"{prefix}/interestpoints.n5"
    export_n5(ro, out, block_size=16)  # storage options default to the store's
    back = read_n5(out, storage_options=options)
    np.testing.assert_array_equal(back.points[(B, "beads")].loc_xyz, pb["loc_xyz"])
    np.testing.assert_array_equal(back.points[(A, "beads")].ids, pa["ids"])
    c = back.correspondences_between(A, B, "beads")
    np.testing.assert_array_equal(c.idx_a, [0, 3])
    np.testing.assert_array_equal(c.idx_b, [24, 1])


def test_s3_interrupted_write_reads_as_absent(s3_prefix, points_factory, monkeypatch):
    prefix, options = s3_prefix
    store = PointStore(f"{prefix}/interestpoints.zarr", storage_options=options, mode="a")
    p = points_factory(10, 3)

    async def crash(root, path, attrs):
        raise RuntimeError("simulated crash before the completion marker")

    monkeypatch.setattr(store_mod, "_commit", crash)
    with pytest.raises(RuntimeError):
        store.write_points(A, "beads", p["ids"], p["loc_xyz"], p["intensity"], p["dog"])
    monkeypatch.undo()
    fresh = PointStore(f"{prefix}/interestpoints.zarr", storage_options=options, mode="r")
    assert not fresh.has_points(A, "beads")
    with pytest.raises(PointsNotFoundError):
        fresh.read_points(A, "beads")
