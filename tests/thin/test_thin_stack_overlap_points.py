"""A thin stack's overlap keeps all its planes' points when a registration moves a hair in z.

Points of a 3-plane stack lie on its planes; the overlap box used to be the intersection of
the views' voxel centres, so a correction of a hundredth of a voxel in z (what a phase round
leaves) cut the first or last plane's points out of the overlap: after the phase round on
this 2 x 2 mosaic no pair had enough candidates. The box now reaches a tenth of a voxel beyond
the outer voxel centres.
Tolerance: the candidates after the shift are at least 90 % of those before, and every
face pair still matches.
"""

from __future__ import annotations

import numpy as np

from rhapso_core import transforms
from rhapso_core.config import PipelineParams
from rhapso_core.pipeline import detect, match
from rhapso_core.pipeline.dataset import load_dataset
from rhapso_core.spimdata import save_xml
from rhapso_core.synthetic.planar_mosaic import mosaic_params
from rhapso_core.synthetic.write import write_dataset


def test_a_hundredth_of_a_voxel_in_z_keeps_the_overlap_points(tmp_path):
    paths = write_dataset(tmp_path / "data", mosaic_params((2, 1), planes=3, tile_xy=(128, 128), seed=0))
    xml = str(paths.xml)
    p = PipelineParams.model_validate({"detection": {"dsxy": 1, "dsz": 1, "threshold": 0.005},
                                       "matching": {"search_radius": 30.0, "max_epsilon": 6.0,
                                                    "model_min_matches": 12}})
    store = str(tmp_path / "ip.zarr")
    for plan in detect.plan_views(xml, p.detection):
        parts = [detect.run_chunk(xml, plan.view, t, plan.params) for t in plan.tasks]
        detect.store_view(store, plan, detect.merge_view(plan, parts))
    m, _ = p.round_params("rigid")
    before = match.match_pair(xml, store, (0, 0), (0, 1), p.detection.label, m)
    sd = load_dataset(xml)
    moved = str(tmp_path / "moved.xml")
    save_xml(sd.with_prepended_transform((0, 1), "hair in z", transforms.translation([0.0, 0.0, 0.04])), moved)
    after = match.match_pair(moved, store, (0, 0), (0, 1), p.detection.label, m)
    assert before.ok and after.ok, (before.reason, after.reason)
    assert after.n_candidates >= 0.9 * before.n_candidates, (before.n_candidates, after.n_candidates)
    assert np.isfinite(after.rms)
