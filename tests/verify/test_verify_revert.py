"""The after-solve check (rhapso_core.verify): tiles a round made worse keep their input registration.

Unit part: the greedy revert on a chain of tiles whose overlap agreement is a known
function of the misplacement. Integration part: a generated 3 x 2 dataset through
detection, matching and the solve (in-process), once as is and once with one tile's
stored points shifted by 10 voxels after matching (a wrong but self-consistent
match set: the solve places that tile 10 voxels off with small link residuals).
"""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.verify import VerifyParams, choose_reverts

# --- unit: a 1-D chain of tiles; NCC falls with the misplacement of two neighbours -------


def _chain(truth_x, placed_x):
    views = [(0, i) for i in range(len(truth_x))]
    regs = {v: transforms.translation([x, 0.0, 0.0]) for v, x in zip(views, placed_x)}
    return views, regs


def _ncc_fn(truth_x):
    def fn(a, b, ma, mb):
        err = (mb[0, 3] - ma[0, 3]) - (truth_x[b[1]] - truth_x[a[1]])
        return float(np.exp(-(err / 3.0) ** 2)), 5000
    return fn


def test_a_tile_placed_wrong_is_reverted_and_its_neighbours_kept():
    truth = [0.0, 100.0, 200.0, 300.0]
    views, before = _chain(truth, [0.0, 102.0, 197.0, 301.0])   # stage errors of a few voxels
    _, after = _chain(truth, [0.0, 100.0, 212.0, 300.0])        # solved; tile 2 placed 12 off
    pairs = [(views[i], views[i + 1]) for i in range(3)]
    regs, rep = choose_reverts(pairs, before, after, _ncc_fn(truth), None, VerifyParams())
    assert [r.view for r in rep.reverted] == [(0, 2)]
    np.testing.assert_allclose(regs[(0, 2)], before[(0, 2)])
    for v in ((0, 1), (0, 3)):
        np.testing.assert_allclose(regs[v], after[v])
    assert rep.worse_than_input and not rep.still_worse


def test_neighbours_are_not_dragged_back_to_a_tile_the_solve_left_in_place():
    # Tile 2 had no usable links (identity correction) while the others were corrected:
    # its overlaps got worse, but reverting tile 1 or 3 would spoil their other overlaps.
    truth = [0.0, 100.0, 200.0, 300.0, 400.0]
    views, before = _chain(truth, [0.0, 103.0, 204.0, 299.0, 402.0])
    _, after = _chain(truth, [0.0, 100.0, 204.0, 300.0, 400.0])
    pairs = [(views[i], views[i + 1]) for i in range(4)]
    regs, rep = choose_reverts(pairs, before, after, _ncc_fn(truth), None, VerifyParams())
    assert rep.reverted == []
    assert {c.name for c in rep.still_worse} == {"t0 s1 - t0 s2"}  # NCC 0.97 -> 0.17 (the only one beyond 0.05)
    assert rep.worse_than_input
    for v in views:
        np.testing.assert_allclose(regs[v], after[v])


def test_link_residuals_decide_where_no_ncc_exists():
    views = [(0, 0), (0, 1)]
    before = {v: np.eye(4) for v in views}
    after = {(0, 0): np.eye(4), (0, 1): transforms.translation([4.0, 0, 0])}

    def link_fn(a, b, ma, mb):
        return float(abs(mb[0, 3] - ma[0, 3]) + 0.3), 20   # matches agreed at identity (0.3: localisation)

    _, rep = choose_reverts([tuple(views)], before, after, None, link_fn, VerifyParams())
    assert [r.view for r in rep.reverted] == [(0, 1)]
    assert "mean match distance 0.30 -> 4.30" in rep.reverted[0].reason


# --- integration: generated images, in-process pipeline ---------------------------------------

SHIFT = np.array([10.0, 0.0, 0.0])   # voxels, along x
BAD = (0, 4)                          # a tile that is not the fixed (first) view


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, match
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    root = tmp_path_factory.mktemp("verify")
    paths = write_dataset(root / "data", SyntheticParams(
        grid=(3, 2, 1), tile_size_xyz=(128, 128, 32), overlap=0.25, blob_density=1500.0,
        n_levels=2, chunk_size_xyz=(64, 64, 32), seed=3))
    p = PipelineParams()
    xml, store = str(paths.xml), str(root / "ip.zarr")
    detect.detect_in_process(xml, store, p.detection)
    m, s = p.round_params("rigid")
    for a, b in match.plan_pairs(xml):
        match.match_pair(xml, store, a, b, "beads", m)
    return root, paths, store, s


def _corrupt(store_uri):
    """Shift one view's stored points, keeping its correspondences (a wrong transform for one tile)."""
    from rhapso_core.pointstore import PointStore

    st = PointStore(store_uri, mode="a")
    saved = [c for c in st.read_all_correspondences("beads") if BAD in (c.view_a, c.view_b)]
    pts = st.read_points(BAD, "beads")
    st.write_points(BAD, "beads", pts.ids, pts.loc_xyz + SHIFT, pts.intensity, pts.dog)
    for c in saved:
        st.write_correspondences(c.view_a, c.view_b, "beads", c.idx_a, c.idx_b)
    return sum(len(c.idx_a) for c in saved)


def _qc(root, xml, solved, store, report):
    from rhapso_core.qc import build_report

    return build_report(xml, solved, store, "beads", solver_report=report, out_html=str(root / "qc.html"),
                        verify_reports=[report.get("verify")])


def test_good_dataset_nothing_reverted_qc_pass(matched, tmp_path):
    from rhapso_core.pipeline import solve
    from rhapso_core.synthetic.scoring import score

    root, paths, store, s = matched
    out = str(tmp_path / "rigid.xml")
    rep = solve.solve_dataset(str(paths.xml), store, "beads", s, out, verify=VerifyParams()).to_dict()
    assert rep["verify"]["reverted"] == [] and rep["verify"]["still_worse"] == []
    assert all(o["ncc_after"] > o["ncc_before"] for o in rep["verify"]["overlaps"]), rep["verify"]["overlaps"]
    assert score(paths.ground_truth, out, gauge="rigid").rms_voxels < 0.3   # measured 0.12
    qc = _qc(tmp_path, str(paths.xml), out, store, rep)
    assert qc["verdict"] == "pass", qc["reasons"]


def test_corrupted_tile_is_reverted_named_and_qc_fails(matched, tmp_path):
    import shutil

    from rhapso_core.pipeline import solve
    from rhapso_core.synthetic.scoring import score

    root, paths, store0, s = matched
    store = str(tmp_path / "ip.zarr")
    shutil.copytree(store0, store)
    assert _corrupt(store) > 50
    xml = str(paths.xml)
    unchecked = str(tmp_path / "unchecked.xml")
    solve.solve_dataset(xml, store, "beads", s, unchecked, verify=None)
    out = str(tmp_path / "rigid.xml")
    rep = solve.solve_dataset(xml, store, "beads", s, out, verify=VerifyParams()).to_dict()
    v = rep["verify"]
    assert [r["view"] for r in v["reverted"]] == [list(BAD)], v["summary"]
    assert "t0 s4" in v["summary"]
    # The reverted tile is back at its stage position: the others keep their solved one.
    from rhapso_core.spimdata import load_xml

    sd_in, sd_out, sd_un = load_xml(xml), load_xml(out), load_xml(unchecked)
    np.testing.assert_allclose(sd_out.view_to_world(BAD), sd_in.view_to_world(BAD))
    for view in sd_in.views():
        if view != BAD:
            np.testing.assert_allclose(sd_out.view_to_world(view), sd_un.view_to_world(view))
    bad_rms = score(paths.ground_truth, unchecked, gauge="rigid").rms_voxels
    kept_rms = score(paths.ground_truth, out, gauge="rigid").rms_voxels
    assert bad_rms > 3.0 and kept_rms < bad_rms / 2   # measured 3.81 -> 1.70 (stage positions: 2.47)
    qc = _qc(tmp_path, xml, out, store, rep)
    assert qc["verdict"] == "fail"
    assert any(r["stage"] == "verify" and "t0 s4" in r["message"] for r in qc["reasons"]), qc["reasons"]
    page = (tmp_path / "qc.html").read_text()
    assert 'id="verify"' in page and "kept its input registration" in page
