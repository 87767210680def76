"""QC metrics on constructed inputs with known answers (no pipeline run)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from scipy import ndimage

from rhapso_core import transforms
from rhapso_core.image_source import ArraySource
from rhapso_core.qc import (
    QCParams,
    coverage,
    detection_metrics,
    link_residuals,
    loop_closure,
    matching_metrics,
    ncc,
    overlap_ncc,
    overlap_ncc_table,
    seam_visibility,
    solver_metrics,
    verdict,
)
from rhapso_core.qc.detection import detection_picture
from rhapso_core.qc.solver import tile_layout_picture


def _texture(shape, seed=0, sigma=1.5):
    rng = np.random.default_rng(seed)
    v = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (v / v.std() * 100 + 500).astype(np.float32)


def _rigid(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    a = np.eye(4)
    a[:3, :3] = q
    a[:3, 3] = rng.uniform(-50, 50, 3)
    return a


# ----------------------------------------------------------------- detection


def test_coverage_counts_occupied_cells():
    pts = np.array([[10.0, 5, 1], [12, 6, 2], [90, 40, 3]])
    frac, occ, total = coverage(pts, (100, 50, 10), (4, 2, 1))
    # x=10,12 -> cell 0 (row 0); x=90,y=40 -> cell 3 (row 1): 2 of 8 cells, exactly.
    assert (occ, total) == (2, 8) and frac == pytest.approx(0.25, abs=0)
    assert coverage(np.zeros((0, 3)), (100, 50, 10), (4, 2, 1))[0] == 0.0


def test_detection_metrics_points_per_overlap():
    geometry = {(0, 0): (np.eye(4), (100, 50, 10)), (0, 1): (transforms.translation([80, 0, 0]), (100, 50, 10))}
    a = np.vstack([np.column_stack([np.full(10, 90.0), np.linspace(1, 48, 10), np.full(10, 5.0)]),
                   np.column_stack([np.full(5, 10.0), np.linspace(1, 48, 5), np.full(5, 5.0)])])
    b = np.column_stack([np.full(7, 50.0), np.linspace(1, 48, 7), np.full(7, 5.0)])
    m = detection_metrics({(0, 0): a, (0, 1): b}, geometry, coverage_grid=(4, 1, 1))
    ra, rb = m["views"]
    assert ra["n_points"] == 15 and rb["n_points"] == 7 and m["total_points"] == 22
    # A's overlap with B is x in [80, 99] of A: exactly the 10 points at x=90; B's points at x=50 lie outside [0, 19].
    assert ra["overlaps"][0]["n_points"] == 10 and ra["overlaps"][0]["other"] == {"timepoint": 0, "setup": 1}
    assert ra["overlaps"][0]["box_xyz"][0][0] == pytest.approx(80.0) and ra["overlaps"][0]["box_xyz"][1][0] == pytest.approx(99.0)
    assert rb["overlaps"][0]["n_points"] == 0
    assert ra["coverage"] == pytest.approx(0.5, abs=0)  # cells 0 and 3 of 4


def test_detection_picture_draws_points_on_projection():
    vol = _texture((8, 64, 96))
    src = ArraySource([vol, vol[::2, ::2, ::2]])
    pts = np.array([[20.0, 30, 4], [70, 10, 2]])

    def red(png):
        im = Image.open(io.BytesIO(png)).convert("RGB")
        arr = np.asarray(im)
        return im.size, int(np.sum((arr[..., 0] > 200) & (arr[..., 1] < 80) & (arr[..., 2] < 80)))

    size, n_red = red(detection_picture(src, pts, max_voxels=10_000, max_side=120))
    assert size == (120, 80)  # aspect of the 96 x 64 view kept at the requested largest side
    assert n_red > 0
    assert red(detection_picture(src, np.zeros((0, 3)), max_voxels=10_000, max_side=120))[1] == 0


# ----------------------------------------------------------------- fusion


def _two_views(levels=1):
    vol = _texture((20, 60, 100))
    a, b = vol[:, :, 0:60], vol[:, :, 40:100]
    mk = (lambda v: ArraySource([v])) if levels == 1 else (lambda v: ArraySource([v, v[:, ::2, ::2].copy()]))
    return mk(np.ascontiguousarray(a)), mk(np.ascontiguousarray(b)), (60, 60, 20)


def test_ncc_identical_and_anticorrelated():
    x = np.random.default_rng(1).normal(size=500)
    assert ncc(x, 3 * x + 7) == pytest.approx(1.0, abs=1e-12)
    assert ncc(x, -x) == pytest.approx(-1.0, abs=1e-12)
    assert ncc(x, np.ones(500)) is None


def test_overlap_ncc_right_vs_wrong_registration():
    sa, sb, size = _two_views()
    right = overlap_ncc(sa, np.eye(4), size, sb, transforms.translation([40, 0, 0]), size)
    wrong = overlap_ncc(sa, np.eye(4), size, sb, transforms.translation([45, 0, 0]), size)
    # Same content at the same world points: NCC 1 up to float32 rounding.
    assert right["ncc"] == pytest.approx(1.0, abs=1e-4) and right["n_samples"] > 1000
    # A 5-voxel error on a texture of correlation length ~1.5 voxels decorrelates the overlap.
    assert wrong["ncc"] < 0.5


def test_overlap_ncc_on_a_coarse_level():
    sa, sb, size = _two_views(levels=2)
    r = overlap_ncc(sa, np.eye(4), size, sb, transforms.translation([40, 0, 0]), size, max_voxels=20_000)
    # Level 1 (factor 2 in x, y) of both views sampled at the same points: the crop offset 40 is even,
    # so the two levels share one grid and agree exactly.
    assert r["ncc"] == pytest.approx(1.0, abs=1e-4)


def test_overlap_ncc_table_before_after():
    sa, sb, size = _two_views()
    v0, v1 = (0, 0), (0, 1)
    rows = overlap_ncc_table(
        {v0: sa, v1: sb}, {v0: size, v1: size},
        before={v0: np.eye(4), v1: transforms.translation([46, 2, 0])},
        after={v0: np.eye(4), v1: transforms.translation([40, 0, 0])},
    )
    assert len(rows) == 1
    assert rows[0]["ncc_after"] == pytest.approx(1.0, abs=1e-4)
    assert rows[0]["ncc_before"] < 0.5


def test_seam_visibility_flags_an_intensity_step():
    img = _texture((16, 40, 120), seed=3, sigma=2.0)
    geometry = {(0, 0): (np.eye(4), (70, 40, 16)), (0, 1): (transforms.translation([50, 0, 0]), (70, 40, 16))}
    smooth = seam_visibility(img, np.eye(4), geometry, seam_width=2.0)
    stepped = img.copy()
    stepped[:, :, :70] += 600.0  # view 0 brighter (6 texture std): a step at its right border (x=69.5), inside view 1
    seam = seam_visibility(stepped, np.eye(4), geometry, seam_width=2.0)
    # Without a step the border band is statistically like the rest (ratio 1 within texture noise).
    assert 0.75 < smooth["ratio"] < 1.33
    assert seam["ratio"] > 1.5 and seam["n_seam"] == smooth["n_seam"] > 0


# ----------------------------------------------------------------- matching and solver


def test_matching_metrics_residuals_and_flags():
    rng = np.random.default_rng(2)
    pa = rng.uniform(0, 100, (40, 3))
    m = transforms.translation([3, -2, 1]) @ transforms.scaling([1.01, 0.99, 1.0])
    pb = transforms.apply(m, pa)
    a, b, c = (0, 0), (0, 1), (0, 2)
    records = [
        {"view_a": [0, 0], "view_b": [0, 1], "n_points_a": 60, "n_points_b": 55, "n_candidates": 50,
         "n_inliers": 40, "rms": 0.0, "status": "ok", "reason": ""},
        {"view_a": [0, 0], "view_b": [0, 2], "n_points_a": 50, "n_points_b": 50, "n_candidates": 40,
         "n_inliers": 8, "rms": 0.3, "status": "ok", "reason": ""},
        {"view_a": [0, 1], "view_b": [0, 2], "n_points_a": 3, "n_points_b": 4, "n_candidates": 0,
         "n_inliers": 0, "rms": None, "status": "too few points", "reason": "3 and 4 points"},
    ]
    out = matching_metrics({(a, b): (pa, pb), (a, c): (pa[:8], pb[:8])}, records, min_inliers=12)
    r_ab, r_ac, r_bc = out["pairs"]
    # An exact affine relation: refitted residuals vanish (float rounding only).
    assert r_ab["residual_max"] < 1e-9 and r_ab["inlier_ratio"] == pytest.approx(0.8) and not r_ab["flag"]
    assert r_ac["flag"] and r_ac["warn"] and "min_inliers 12" in r_ac["flag_reasons"][0]
    assert r_ac["inlier_ratio"] == pytest.approx(0.2)
    # Too few points in the overlap: flagged, but not a warning (nothing to match there).
    assert r_bc["flag"] and not r_bc["warn"]
    assert out["n_pairs"] == 3 and out["n_matched"] == 2 and out["n_correspondences"] == 48


def test_link_residuals_and_solver_metrics():
    a, b, c = (0, 0), (0, 1), (0, 2)
    rng = np.random.default_rng(4)
    pa = rng.uniform(0, 50, (20, 3))
    off_b = np.array([40.0, 0, 0])
    matches = {(a, b): (pa, pa - off_b), (a, c): (pa[:10], pa[:10] - [0, 40, 0])}
    before = {a: np.eye(4), b: np.eye(4), c: np.eye(4)}
    after = {a: np.eye(4), b: transforms.translation(off_b), c: transforms.translation([0, 40.5, 0])}
    rows = link_residuals(matches, before, after)
    ab, ac = rows
    assert ab["mean_before"] == pytest.approx(40.0) and ab["mean_after"] == pytest.approx(0.0, abs=1e-12)
    assert ac["mean_after"] == pytest.approx(0.5) and ac["max_after"] == pytest.approx(0.5)
    report = {"report": {"links": [], "removed_links": [{"a": {"timepoint": 0, "setup": 0}, "b": {"timepoint": 0, "setup": 2}}],
                         "tile_errors": [{"timepoint": 0, "setup": 0, "error": 0.1}], "model": "rigid"}}
    sol = solver_metrics(rows, [a, b, c, (0, 3)], report)
    status = {r["name"]: r["status"] for r in sol["links"]}
    assert status == {"t0 s0 - t0 s1": "used", "t0 s0 - t0 s2": "removed"}
    tiles = {t["name"]: t for t in sol["tiles"]}
    # Tile errors use used links only: view 2's only link was removed, view 3 had none.
    assert tiles["t0 s0"]["error"] == pytest.approx(0.0, abs=1e-12) and tiles["t0 s0"]["reported_error"] == 0.1
    assert tiles["t0 s2"]["error"] is None
    assert sol["unconnected_views"] == [{"timepoint": 0, "setup": 2}, {"timepoint": 0, "setup": 3}]
    png = tile_layout_picture({v: (after.get(v, np.eye(4)), (50, 50, 10)) for v in [a, b, c]}, sol["tiles"], sol["links"])
    assert Image.open(io.BytesIO(png)).size[0] > 100


def test_loop_closure_consistent_and_injected():
    views = [(0, i) for i in range(4)]
    q = {v: _rigid(i) for i, v in enumerate(views)}
    edges = [(views[0], views[1]), (views[1], views[2]), (views[2], views[3]), (views[3], views[0]), (views[1], views[3])]

    def model(u, w):  # world as seen in u -> world as seen in w, consistent by construction
        return q[w] @ transforms.invert(q[u])

    # One edge stored in the opposite direction: the check must invert it.
    models = {(u, w) if k != 4 else (w, u): (model(u, w) if k != 4 else model(w, u)) for k, (u, w) in enumerate(edges)}
    pts = {k: np.random.default_rng(7).uniform(-100, 100, (5, 3)) for k in models}
    clean = loop_closure(models, pts)
    assert len(clean) == 2  # 5 edges, 4 nodes: a cycle basis of 2
    assert max(c["max_error"] for c in clean) < 1e-9

    e = np.array([0.0, 2.0, -1.5])  # |e| = 2.5
    bad = dict(models)
    bad[(views[0], views[1])] = transforms.translation(e) @ models[(views[0], views[1])]
    found = loop_closure(bad, pts)
    for c in found:
        cyc = [(v["timepoint"], v["setup"]) for v in c["views"]]
        k = len(cyc)
        has = any({cyc[i], cyc[(i + 1) % k]} == {views[0], views[1]} for i in range(k))
        # A rigid chain moves every point by the injected translation's length, exactly.
        if has:
            assert c["max_error"] == pytest.approx(2.5, abs=1e-9) and c["mean_error"] == pytest.approx(2.5, abs=1e-9)
        else:
            assert c["max_error"] < 1e-9
    assert any(c["max_error"] > 2 for c in found)


# ----------------------------------------------------------------- verdict and parameters


def _metrics(mean_after=0.3, ncc_after=0.95, ncc_before=0.6):
    return {
        "solver": {"tiles": [{"name": "t0 s0", "error": 0.2}, {"name": "t0 s1", "error": 0.2}],
                   "links": [{"name": "t0 s0 - t0 s1", "status": "used", "mean_after": mean_after}],
                   "unconnected_views": []},
        "fusion": {"ncc": [{"name": "t0 s0 - t0 s1", "ncc_before": ncc_before, "ncc_after": ncc_after}],
                   "seam": {"ratio": 1.1}},
    }


def test_verdict_levels_and_thresholds():
    p = QCParams()
    assert verdict(_metrics(), p)["verdict"] == "pass"
    v = verdict(_metrics(mean_after=3.0), p)
    assert v["verdict"] == "fail" and "max_link_error 2.0" in v["reasons"][0]["message"]
    assert v["thresholds"]["max_link_error"] == 2.0
    assert verdict(_metrics(mean_after=3.0), QCParams(max_link_error=5.0))["verdict"] == "pass"
    w = verdict(_metrics(ncc_after=0.2, ncc_before=0.18), p)
    assert w["verdict"] == "warn" and any("min_ncc_after" in r["message"] for r in w["reasons"])
    # Worse than the input positions anywhere fails the run.
    f = verdict(_metrics(ncc_after=0.2), p)
    assert f["verdict"] == "fail" and any("worse than the input" in r["message"] for r in f["reasons"])
    g = verdict({**_metrics(), "verify": [{"round": 1, "reverted": [{"name": "t0 s1", "reason": "t0 s0 - t0 s1: NCC"}],
                                           "still_worse": []}]}, p)
    assert g["verdict"] == "fail" and "t0 s1 kept its input registration" in g["reasons"][0]["message"]


def test_params_refuse_bad_values_by_name():
    with pytest.raises(ValidationError, match="min_coverage"):
        QCParams(min_coverage=2.0)
    with pytest.raises(ValidationError, match="max_link_errr"):
        QCParams(max_link_errr=1.0)


def test_a_view_the_solve_linked_by_an_anchor_is_not_called_unconstrained():
    """The solve may place a view by phase-correlation anchors or overlap-affine fits where points did not
    match (a 3 x 3 x 2 grid of small tiles: three views so placed, 0.02 voxel from the truth, were called
    unconstrained). The solver's report of used links, of any label, counts; a view in no used link,
    here or there, is still unconstrained, and a removed anchor does not count."""
    a, b, c, d = (0, 0), (0, 1), (0, 2), (0, 3)
    pa = np.random.default_rng(5).uniform(0, 50, (20, 3))
    rows = link_residuals({(a, b): (pa, pa)}, {v: np.eye(4) for v in (a, b)}, {v: np.eye(4) for v in (a, b)})

    def link(u, v, status, label="phase-correlation", n=8):
        return {"a": {"timepoint": u[0], "setup": u[1]}, "b": {"timepoint": v[0], "setup": v[1]}, "label": label,
                "n_matches": n, "status": status}

    report = {"report": {"links": [link(a, b, "used", "beads", 20), link(b, c, "used"),
                                   link(c, d, "removed"), link(a, d, "used", n=0)]}}
    sol = solver_metrics(rows, [a, b, c, d], report)
    assert sol["unconnected_views"] == [{"timepoint": 0, "setup": 3}]
    assert solver_metrics(rows, [a, b, c, d], None)["unconnected_views"] == [
        {"timepoint": 0, "setup": 2}, {"timepoint": 0, "setup": 3}]
