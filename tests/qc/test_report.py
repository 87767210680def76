"""The HTML report of a real (tiny) pipeline run: content, dependence on the outputs, self-containment, browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from rhapso_core import transforms
from rhapso_core.pointstore import PointStore
from rhapso_core.qc import build_report
from rhapso_core.spimdata import load_xml, save_xml


def _embedded(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="qc-metrics">(.*?)</script>', html, re.S).group(1))


def _section(html: str, name: str) -> str:
    return re.search(rf'<section id="{name}".*?</section>', html, re.S).group(0)


@pytest.fixture(scope="module")
def report(qc_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("qc_report") / "qc_report.html"
    result = build_report(
        qc_run.input_xml, qc_run.solved_xml, qc_run.store, "beads",
        pair_records=qc_run.pair_records, solver_report=qc_run.solver_report, fused_uri=qc_run.fused,
        ground_truth=qc_run.ground_truth, out_html=str(out),
        neuroglancer_base_url="http://127.0.0.1:9000/", neuroglancer_serve_root=str(qc_run.root),
    )
    return result, out.read_text(encoding="utf-8")


def test_report_of_a_good_run(report, qc_run):
    result, html = report
    assert result["verdict"] == "pass", result["reasons"]
    assert "Verdict: PASS" in html and result["report_uri"].endswith("qc_report.html")
    m = result["metrics"]
    store = PointStore(qc_run.store, mode="r")
    # Detection counts are the store's.
    assert {(r["timepoint"], r["setup"]): r["n_points"] for r in m["detection"]["views"]} == {
        v: store.point_info(v, "beads")["n_points"] for v in store.list_views("beads")}
    # Tile errors recomputed from stored matches + solved XML equal the solver's own (float rounding only).
    reported = {(t["timepoint"], t["setup"]): t["error"] for t in qc_run.solver_report["report"]["tile_errors"]}
    for t in m["solver"]["tiles"]:
        assert t["error"] == pytest.approx(reported[(t["timepoint"], t["setup"])], abs=1e-9)
    assert m["matching"]["n_pairs"] == len(qc_run.pair_records)
    # Alignment improves every overlap's agreement on this dataset (nominal poses are off by up to 3 voxels).
    assert all(r["ncc_after"] > r["ncc_before"] for r in m["fusion"]["ncc"] if r["ncc_before"] is not None)
    assert m["truth"]["rms_voxels"] < 1.0 and "Ground truth" in html
    assert m["fusion"]["seam"]["ratio"] == pytest.approx(1.0, abs=0.3)
    assert _embedded(html)["verdict"]["verdict"] == "pass"


def test_report_is_self_contained(report):
    _, html = report
    assert "<link" not in html and "@import" not in html and "url(" not in html
    srcs = re.findall(r"""\ssrc\s*=\s*["']([^"']*)""", html)
    assert srcs and all(u.startswith("data:image/png;base64,") for u in srcs), "every src must be a data: URI"
    hrefs = re.findall(r"""<a\s+class="([^"]*)"\s+href="([^"]*)\"""", html)
    all_hrefs = re.findall(r"""href\s*=\s*["']([^"']*)""", html)
    assert len(hrefs) == len(all_hrefs) == 1 and hrefs[0][0] == "ng-link"
    assert hrefs[0][1].startswith("https://neuroglancer-demo.appspot.com/#!")
    n_img = len(re.findall(r"<img\b", html))
    assert n_img == len(re.findall(r'<img src="data:image/png;base64,', html)) and n_img >= 4


def test_report_changes_with_the_outputs(report, qc_run, tmp_path):
    _, html0 = report
    base = _embedded(html0)["metrics"]

    # 1. Remove the points of one view (a copy of the store).
    store2 = tmp_path / "interestpoints.zarr"
    shutil.copytree(qc_run.store, store2)
    PointStore(str(store2), mode="a").delete_points((0, 1), "beads")
    r1 = build_report(qc_run.input_xml, qc_run.solved_xml, str(store2), "beads",
                      out_html=str(tmp_path / "r1.html"))
    html1 = (tmp_path / "r1.html").read_text()
    det1 = {(r["timepoint"], r["setup"]): r["n_points"] for r in _embedded(html1)["metrics"]["detection"]["views"]}
    det0 = {(r["timepoint"], r["setup"]): r["n_points"] for r in base["detection"]["views"]}
    assert det1[(0, 1)] == 0 < det0[(0, 1)] and all(det1[v] == det0[v] for v in det0 if v != (0, 1))
    assert r1["verdict"] == "fail" and "t0 s1: no used link" in html1 and "Verdict: FAIL" in html1

    # 2. Perturb the solved registration of one view by 3 world units along x.
    sd = load_xml(qc_run.solved_xml)
    moved = sd.with_prepended_transform((0, 1), "qc test shift", transforms.translation([3.0, 0, 0]))
    xml2 = tmp_path / "perturbed.xml"
    save_xml(moved, str(xml2))
    r2 = build_report(qc_run.input_xml, str(xml2), qc_run.store, "beads", solver_report=qc_run.solver_report,
                      out_html=str(tmp_path / "r2.html"))
    html2 = (tmp_path / "r2.html").read_text()
    links0 = {r["name"]: r for r in base["solver"]["links"]}
    for r in _embedded(html2)["metrics"]["solver"]["links"]:
        if "t0 s1" in r["name"]:
            # Matches of view 1 now sit ~3 units off (the old residual is ~0.2): the distance grows by 2.5 to 3.5.
            assert 2.5 < r["mean_after"] - links0[r["name"]]["mean_after"] < 3.5
            cell = f'<td class="">{r["mean_after"]:.3g}</td><td class="">{r["max_after"]:.3g}</td>'
            assert cell in _section(html2, "solver") and cell not in _section(html0, "solver")
        else:
            assert r["mean_after"] == pytest.approx(links0[r["name"]]["mean_after"], abs=1e-12)
    assert r2["verdict"] == "fail" and "max_link_error" in html2
    ncc0 = {r["name"]: r["ncc_after"] for r in base["fusion"]["ncc"]}
    for r in r2["metrics"]["fusion"]["ncc"]:
        if "t0 s1" in r["name"] and ncc0[r["name"]] is not None:
            assert r["ncc_after"] < ncc0[r["name"]] - 0.02


def test_report_renders_in_headless_chromium(report, chromium, tmp_path):
    result, html = report
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    n_img = len(re.findall(r"<img\b", html))
    # The inline script ran after load and counted the pictures that decoded (naturalWidth > 0).
    title = re.search(r"<title>(.*?)</title>", dom).group(1)
    assert title == f"QC pass - images {n_img}/{n_img}", title
    assert f'data-images-decoded="{n_img}"' in dom and "Verdict: PASS" in dom
    assert "Uncaught" not in proc.stderr, proc.stderr[-2000:]


def _screenshot(chromium: str, page, png, tmp_path, width: int = 1280, height: int = 4000) -> None:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile-shot'}", f"--window-size={width},{height}",
           f"--screenshot={png}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]


def test_report_screenshot_shows_the_verdict_and_the_pictures(report, chromium, tmp_path):
    """The rendered page, looked at as pixels: a pass banner in the verdict's colour near the top,
    the microscopy pictures decoded (textured mid-grey areas on a light page), nothing wider than the window.

    Tolerances: the banner must fill >= 40 % of a row within the top 800 px (its colour to +-3 per
    channel); >= 40 cells of 40 x 40 px that are mostly mid-grey (30-220) with texture (sd > 25): the
    six pictures of this run fill ~240, a broken <img> shows a small icon (none);
    the rightmost 16 px column background-white (no horizontal overflow)."""
    import numpy as np
    from imageio.v3 import imread

    _, html = report
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    png = tmp_path / "page.png"
    _screenshot(chromium, page, png, tmp_path)
    rgb = imread(png)[..., :3].astype(int)
    h, w, _ = rgb.shape

    def colour_rows(hex_colour: str, top: int) -> np.ndarray:
        c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return (np.abs(rgb[:top] - c).max(axis=2) <= 3).mean(axis=1)

    assert colour_rows("#d1e7dd", 800).max() >= 0.4, "no pass banner (#d1e7dd) near the top"
    assert colour_rows("#f8d7da", 800).max() < 0.05, "a fail-coloured band near the top of a pass report"
    grey = rgb.mean(axis=2)
    cells = (grey[: h // 40 * 40, : w // 40 * 40].reshape(h // 40, 40, w // 40, 40)
             .transpose(0, 2, 1, 3).reshape(h // 40, w // 40, 1600))
    # A picture cell is mostly mid-grey and textured; text is mostly white, a flat fill has no texture.
    pictures = ((((cells > 30) & (cells < 220)).mean(axis=2) >= 0.5) & (cells.std(axis=2) > 25)).sum()
    assert pictures >= 40, f"only {pictures} textured 40-px cells: pictures not decoded?"
    assert (grey[:, -16:] > 235).mean() > 0.99, "content reaches the right edge (horizontal overflow)"
    shutil.copy(png, tmp_path / "kept.png")  # left in pytest's tmp folder for a person to look at
