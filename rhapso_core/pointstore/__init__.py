"""Interest points and correspondences per view and label, in a zarr v3 store.

The store lives next to the dataset (convention ``<dataset folder>/interestpoints.zarr``,
local or ``s3://``) and mirrors BigStitcher's ``interestpoints.n5`` hierarchy, so the
export (:func:`export_n5`) is a direct copy with the N5 encoding::

    interestpoints.zarr/                       root attrs: rhapso_pointstore.schema_version = 1
      tpId_{t}_viewSetupId_{s}/                one group per view (timepoint t, setup s)
        {label}/                               e.g. "beads"
          interestpoints/                      attrs: pointcloud, type="list", list version
                                                      (BigStitcher's), complete, token,
                                                      n_points, params
            id           (N,)   int64          point ids, unique within the view
            loc          (N, 3) float64        x y z, full-resolution view-voxel coordinates
            intensities  (N,)   float32        image intensity at the point (NaN if unknown)
            dog          (N,)   float32        DoG response at the point (NaN if unknown)
          correspondences/
            tpId_{t2}_viewSetupId_{s2}/{label}/  one group per partner view and label
                                               attrs: complete, pair_token, points_token,
                                                      other_points_token, n, params, ...
              ids      (M, 2) int64            (own point id, partner point id)
              indices  (M, 2) int64            (own point index, partner point index)

Correspondences are stored per partner rather than in BigStitcher's one ``data``
table per view (rows: own id, partner id, partner's ``idMap`` code) so parallel
matching tasks of different pairs write disjoint objects, and a re-run replaces a
pair instead of appending; :func:`export_n5` assembles BigStitcher's table and
``idMap``.

Atomic writes use a completion marker (S3 has no rename): a group's attributes are
set to ``complete: false``, its arrays are written, then its attributes with
``complete: true`` are written last. A group without ``complete: true`` reads as
absent. A pair is usable only if both halves are complete, share one
``pair_token``, and their recorded points tokens equal the views' current ones,
so re-detecting a view invalidates its matches instead of silently misindexing.

See ``docs/pointstore.md`` for the full description and the BigStitcher mapping.
"""

from .bigstitcher import (
    BIGSTITCHER_BLOCK_SIZE,
    N5Contents,
    export_n5,
    read_n5,
    view_interest_points_entries,
)
from .layout import (
    SCHEMA_VERSION,
    CorrespondencesNotFoundError,
    PointsNotFoundError,
    PointStoreError,
    ViewId,
    label_path,
    view_key,
)
from .n5 import N5Container
from .records import Correspondences, StoredPoints, ViewInterestPointsEntry
from .store import PointStore

__all__ = [
    "BIGSTITCHER_BLOCK_SIZE",
    "SCHEMA_VERSION",
    "Correspondences",
    "CorrespondencesNotFoundError",
    "N5Container",
    "N5Contents",
    "PointStore",
    "PointStoreError",
    "PointsNotFoundError",
    "StoredPoints",
    "ViewId",
    "ViewInterestPointsEntry",
    "export_n5",
    "label_path",
    "read_n5",
    "view_interest_points_entries",
    "view_key",
]
