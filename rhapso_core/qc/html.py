"""The self-contained HTML page of a QC report (inline CSS, pictures as data URIs, no external resources)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from html import escape

__all__ = ["render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1e1e1e;max-width:1200px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
h3{font-size:1.0em;margin-bottom:4px}
table{border-collapse:collapse;font-size:0.85em;margin:6px 0 10px 0}
th,td{border:1px solid #ddd;padding:2px 7px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}tr.flag td{background:#fff3cd}tr.bad td{background:#f8d7da}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0}
.verdict h2{border:none;margin:0 0 6px 0;font-size:1.35em}
.v-pass{background:#d1e7dd;border:1px solid #a3cfbb}.v-warn{background:#fff3cd;border:1px solid #ffe69c}
.v-fail{background:#f8d7da;border:1px solid #f1aeb5}
li.fail{color:#842029}li.warn{color:#664d03}
.gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0}
figcaption{font-size:0.8em;color:#555}.meta{color:#555;font-size:0.85em}
.note{color:#555;font-size:0.85em;max-width:900px}code{font-size:0.9em}
"""

# Sets the page title to how many pictures decoded: a headless browser's DOM dump shows it.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = 'QC ' + document.body.getAttribute('data-verdict') + ' - images ' + ok + '/' + imgs.length;
  document.body.setAttribute('data-images-decoded', String(ok));
  document.body.setAttribute('data-images-total', String(imgs.length));
});
"""


def fmt(x, digits: int = 3) -> str:
    """A number for a table cell ('-' for missing)."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.4g}"
    return escape(str(x))


def table(rows: Sequence[dict], cols: Sequence[tuple[str, Callable[[dict], object], str]],
          row_class: Callable[[dict], str] | None = None) -> str:
    """An HTML table; ``cols`` are (header, value of a row, "l" for left-aligned or "")."""
    head = "".join(f'<th class="{a}">{escape(h)}</th>' for h, _, a in cols)
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        cells = "".join(f'<td class="{a}">{fmt(f(r))}</td>' for _, f, a in cols)
        body.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def img(uri: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{escape(alt)}">{cap}</figure>'


def _verdict_section(v: dict) -> str:
    level = v["verdict"]
    items = "".join(
        f'<li class="{r["level"]}"><b>{r["level"].upper()}</b> [{escape(r["stage"])}] {escape(r["message"])}</li>'
        for r in v["reasons"]
    ) or "<li>All checks within thresholds.</li>"
    th = "".join(f'<tr><td class="l">{escape(k)}</td><td class="l">{escape(json.dumps(val))}</td></tr>'
                 for k, val in v["thresholds"].items())
    return (f'<section id="verdict" class="verdict v-{level}"><h2 id="verdict-text">Verdict: {level.upper()}</h2>'
            f"<ul>{items}</ul><details><summary>Thresholds (QCParams)</summary>"
            f'<table><thead><tr><th class="l">parameter</th><th class="l">value</th></tr></thead><tbody>{th}</tbody></table>'
            "</details></section>")


def _detection(det: dict, pics: list[tuple[str, str]]) -> str:
    cols = [("view", lambda r: r["name"], "l"), ("points", lambda r: r["n_points"], ""),
            ("coverage", lambda r: r["coverage"], ""), ("cells with points", lambda r: f"{r['cells_with_points']}/{r['cells']}", ""),
            ("points per overlap", lambda r: ", ".join(f"s{o['other']['setup']}: {o['n_points']}" for o in r["overlaps"]), "l")]
    gallery = "".join(img(u, c, c) for u, c in pics)
    grid = "x".join(str(g) for g in det["coverage_grid"])
    return ('<section id="detection"><h2>Detection</h2>'
            f'<p>{det["total_points"]} points in {len(det["views"])} views; mean coverage {fmt(det["mean_coverage"])} '
            f'(fraction of a {grid} grid of cells per view that hold points).</p>'
            + table(det["views"], cols)
            + (f'<h3>Points on maximum projections</h3><div class="gallery">{gallery}</div>' if pics else "")
            + "</section>")


def _matching(mat: dict, hist: str | None) -> str:
    cols = [("pair", lambda r: r["name"], "l"), ("points a", lambda r: r["n_points_a"], ""),
            ("points b", lambda r: r["n_points_b"], ""), ("candidates", lambda r: r["n_candidates"], ""),
            ("inliers", lambda r: r["n_inliers"], ""), ("inlier ratio", lambda r: r["inlier_ratio"], ""),
            ("rms", lambda r: r["rms"], ""), ("residual p50", lambda r: r["residual_p50"], ""),
            ("p90", lambda r: r["residual_p90"], ""), ("max", lambda r: r["residual_max"], ""),
            ("status", lambda r: r["status"], "l"), ("flags", lambda r: "; ".join(r["flag_reasons"]), "l")]
    s = mat["residual_summary"]
    return ('<section id="matching"><h2>Matching</h2>'
            f'<p>{mat["n_matched"]} of {mat["n_pairs"]} pairs matched, {mat["n_correspondences"]} stored correspondences, '
            f'{mat["n_flagged"]} pairs flagged. Residuals to each pair\'s refitted {escape(mat["kind"])} model '
            f'(world units): median {fmt(s["residual_p50"])}, 90th percentile {fmt(s["residual_p90"])}, max {fmt(s["residual_max"])}.</p>'
            + table(mat["pairs"], cols, lambda r: ("bad" if r["warn"] else "flag") if r["flag"] else "")
            + (img(hist, "residual histogram", "Residual distribution (world units)") if hist else "")
            + "</section>")


def _solver(sol: dict, loops: list | None, layout: str | None) -> str:
    tcols = [("view", lambda r: r["name"], "l"), ("error after", lambda r: r["error"], ""),
             ("matches", lambda r: r["n_matches"], ""), ("solver's error", lambda r: r["reported_error"], "")]
    lcols = [("link", lambda r: r["name"], "l"), ("matches", lambda r: r["n_matches"], ""),
             ("mean before", lambda r: r["mean_before"], ""), ("max before", lambda r: r["max_before"], ""),
             ("mean after", lambda r: r["mean_after"], ""), ("max after", lambda r: r["max_after"], ""),
             ("status", lambda r: r["status"], "l")]
    info = []
    if sol["has_report"]:
        info.append(f"model {fmt(sol['model'])}, method {fmt(sol['method'])}, iterations {fmt(sol['iterations'])}, "
                    f"solver's final error {fmt(sol['final_error'])}, max {fmt(sol['max_error'])}, converged {fmt(sol['converged'])}")
    info.append(f"mean tile error {fmt(sol['mean_tile_error'])}, max {fmt(sol['max_tile_error'])} (world units), "
                f"{len(sol['removed_links'])} removed links, {len(sol['unconnected_views'])} unconnected views")
    out = ['<section id="solver"><h2>Global optimisation</h2>', "".join(f"<p>{i}.</p>" for i in info),
           '<p class="note">Distances between matched points in world units, under the input registrations '
           "(before) and the solved ones (after), recomputed from the stored correspondences.</p>"]
    if layout:
        out.append(img(layout, "tile layout", "Tiles in world XY coloured by error after; lines: links (dashed grey: not used)"))
    out.append("<h3>Tiles</h3>" + table(sol["tiles"], tcols))
    out.append("<h3>Links</h3>" + table(sol["links"], lcols, lambda r: "" if r["status"] == "used" else "flag"))
    if loops is not None:
        ccols = [("cycle", lambda r: r["name"], "l"), ("length", lambda r: r["length"], ""),
                 ("mean closure error", lambda r: r["mean_error"], ""), ("max closure error", lambda r: r["max_error"], "")]
        out.append("<h3>Loop closure</h3><p class=\"note\">Pairwise models refitted to the stored matches, composed around "
                   "each cycle of a cycle basis of the link graph; a consistent set returns points to where they started "
                   "(world units).</p>" + (table(loops, ccols) if loops else "<p>No cycles in the link graph.</p>"))
    out.append("</section>")
    return "".join(out)


def _fusion(fus: dict, fused_pic: str | None) -> str:
    cols = [("pair", lambda r: r["name"], "l"), ("NCC before", lambda r: r["ncc_before"], ""),
            ("NCC after", lambda r: r["ncc_after"], ""), ("samples before", lambda r: r["n_before"], ""),
            ("samples after", lambda r: r["n_after"], "")]
    out = ['<section id="fusion"><h2>Overlaps and fusion</h2>',
           '<p class="note">Normalised cross-correlation of two views sampled at the same world points of their overlap '
           "(coarse level, trilinear), under the input and the solved registrations.</p>",
           table(fus.get("ncc", []), cols)]
    seam = fus.get("seam")
    if seam:
        out.append(f'<p>Seam visibility (fused image, level {fmt(seam.get("level"))}): gradient at inner view borders / elsewhere = '
                   f'<b>{fmt(seam["ratio"])}</b> ({seam["n_seam"]} seam voxels, {seam["n_interior"]} interior voxels); '
                   f'at those borders, gradient across / along = <b>{fmt(seam.get("step_ratio"))}</b> '
                   '(1: no intensity step, whatever the content).</p>')
    if fused_pic:
        out.append(img(fused_pic, "fused projection", "Fused image, maximum projection along z"))
    out.append("</section>")
    return "".join(out)


def _verify(rounds: list) -> str:
    cols = [("round", lambda r: r["round"], "l"), ("tile", lambda r: r["name"], "l"),
            ("action", lambda r: r["action"], "l"), ("why", lambda r: r["reason"], "l")]
    rows = [{"round": r.get("round"), "name": t["name"], "action": "kept its input registration", "reason": t["reason"]}
            for r in rounds for t in r.get("reverted", [])]
    rows += [{"round": r.get("round"), "name": n, "action": "overlap still worse than the input", "reason": ""}
             for r in rounds for n in r.get("still_worse", [])]
    note = ('<p class="note">After each round\'s solve every overlap is compared under the round\'s input and its '
            "result (NCC of the images, mean match distance); a tile whose alignment made its overlaps worse keeps "
            "its input registration.</p>")
    body = table(rows, cols, lambda r: "flag") if rows else "<p>No round made any overlap worse.</p>"
    return '<section id="verify"><h2>Checked against the input</h2>' + note + body + "</section>"


def _truth(t: dict) -> str:
    cols = [("view", lambda r: f"t{r['timepoint']} s{r['setup']}", "l"), ("rms um", lambda r: r["rms_um"], ""),
            ("max um", lambda r: r["max_um"], ""), ("rms voxels", lambda r: r["rms_voxels"], ""),
            ("nominal rms um", lambda r: r["nominal_rms_um"], "")]
    return ('<section id="truth"><h2>Ground truth</h2>'
            f'<p>Registration error ({escape(t["gauge"])} gauge removed): RMS <b>{fmt(t["rms_um"])} um</b> = '
            f'{fmt(t["rms_voxels"])} voxels, max {fmt(t["max_um"])} um; nominal positions: RMS {fmt(t["nominal_rms_um"])} um, '
            f'max {fmt(t["nominal_max_um"])} um.</p>' + table(t["per_view"], cols) + "</section>")


def _inputs(meta: dict) -> str:
    rows = "".join(f'<tr><td class="l">{escape(k)}</td><td class="l"><code>{escape(str(v))}</code></td></tr>'
                   for k, v in meta.items() if v is not None)
    return f'<table class="inputs"><tbody>{rows}</tbody></table>'


def render_report(metrics: dict, verdict: dict, pictures: dict, meta: dict,
                  neuroglancer: str | None = None, title: str = "Rhapso QC report") -> str:
    """The report page.

    Parameters
    ----------
    metrics : dict
        JSON-able metric sections (embedded as ``<script type="application/json" id="qc-metrics">``).
    verdict : dict
        :func:`rhapso_core.qc.verdict.verdict` output.
    pictures : dict
        Data URIs: ``detection`` (list of (uri, caption)), ``residuals``, ``layout``, ``fused``.
    meta : dict
        Inputs shown at the top (name -> path).
    neuroglancer : str, optional
        A Neuroglancer link (the only external URL in the page).
    """
    parts = [f"<h1>{escape(title)}</h1>", _inputs(meta), _verdict_section(verdict)]
    if metrics.get("parameters"):
        from rhapso_core.qc.parameters import parameters_section

        parts.append(parameters_section(metrics["parameters"]))
    if metrics.get("detection"):
        parts.append(_detection(metrics["detection"], pictures.get("detection", [])))
    if metrics.get("matching"):
        parts.append(_matching(metrics["matching"], pictures.get("residuals")))
    if metrics.get("phase"):
        from rhapso_core.qc.phase import phase_section

        parts.append(phase_section(metrics["phase"]))
    if metrics.get("solver"):
        parts.append(_solver(metrics["solver"], metrics.get("loops"), pictures.get("layout")))
    if metrics.get("fusion"):
        parts.append(_fusion(metrics["fusion"], pictures.get("fused")))
    if metrics.get("verify"):
        parts.append(_verify(metrics["verify"]))
    if metrics.get("truth"):
        parts.append(_truth(metrics["truth"]))
    if metrics.get("intensity"):
        from rhapso_core.qc.intensity import intensity_section

        parts.append(intensity_section(metrics["intensity"]))
    if neuroglancer:
        parts.append('<section id="neuroglancer"><h2>Neuroglancer</h2>'
                     f'<p><a class="ng-link" href="{escape(neuroglancer, quote=True)}">Open the fused image and the placed tiles '
                     "in Neuroglancer</a> (the data must be reachable from the browser).</p></section>")
    data = json.dumps({"verdict": verdict, "metrics": metrics}, allow_nan=False).replace("</", "<\\/")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
            f'<body data-verdict="{verdict["verdict"]}">' + "\n".join(parts)
            + f'<script type="application/json" id="qc-metrics">{data}</script>'
            + f"<script>{_SCRIPT}</script></body></html>\n")
