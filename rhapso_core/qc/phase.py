"""QC of phase-correlation rounds: each link's correlation, shift, and how well the solve kept it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rhapso_core import transforms
from rhapso_core.qc._records import name

__all__ = ["phase_metrics", "phase_section", "phase_link_matches"]


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else float(x)


def phase_metrics(
    links: Sequence[Mapping[str, Any]], before: Mapping, after: Mapping
) -> dict[str, Any]:
    """Per-link rows and a summary from ``PhaseLink.to_dict()`` records.

    ``before`` / ``after``: view -> voxel -> world affine of the input and solved XMLs. A used
    link's residual is the distance (world units) between its measured shift and the relative
    motion the run gave b against a at the overlap's centre (all rounds together; for a run of
    phase rounds only, the solve's misfit of that link).
    """
    rows = []
    for d in links:
        a, b = tuple(d["view_a"]), tuple(d["view_b"])
        shift = [np.nan if v is None else float(v) for v in d["shift_xyz"]]
        residual = None
        if d["status"] == "ok" and all(v in before and v in after for v in (a, b)):
            c = (np.asarray(d["box_min_xyz"], float) + np.asarray(d["box_max_xyz"], float)) / 2.0
            # the world point c seen by each view before, and where the run put it
            moved = []
            for v in (a, b):
                p = transforms.apply(transforms.invert(before[v]), c[None])
                moved.append(transforms.apply(after[v], p)[0] - c)
            residual = float(np.linalg.norm((moved[1] - moved[0]) - np.asarray(shift)))
        rows.append({
            "name": f"{name(a)} - {name(b)}", "r": _num(d.get("r")), "shift_x": _num(shift[0]),
            "shift_y": _num(shift[1]), "shift_z": _num(shift[2]),
            "shift_length": _num(np.linalg.norm(shift)) if np.all(np.isfinite(shift)) else None,
            "level": d.get("level"), "refined_level": d.get("refined_level"), "status": d["status"],
            "reason": d.get("reason", ""), "residual": residual,
        })
    rs = [r["r"] for r in rows if r["status"] == "ok" and r["r"] is not None]
    res = [r["residual"] for r in rows if r["residual"] is not None]
    return {
        "n_pairs": len(rows), "n_used": len(rs),
        "r_min": min(rs) if rs else None, "r_median": float(np.median(rs)) if rs else None,
        "residual_max": max(res) if res else None,
        "n_filtered": sum(r["status"] not in ("ok",) for r in rows), "links": rows,
    }


def phase_link_matches(links: Sequence[Mapping[str, Any]], before: Mapping) -> dict:
    """The used links as the solve saw them: the overlap box's 8 corners on a's side and the same
    corners less the shift on b's, each in its view's voxel frame (x y z) under ``before``."""
    out = {}
    for d in links:
        a, b = tuple(d["view_a"]), tuple(d["view_b"])
        if d["status"] != "ok" or a not in before or b not in before:
            continue
        c = transforms.box_corners(d["box_min_xyz"], d["box_max_xyz"])
        pa = transforms.apply(transforms.invert(before[a]), c)
        pb = transforms.apply(transforms.invert(before[b]), c - np.asarray(d["shift_xyz"], dtype=np.float64))
        out[(a, b)] = (pa, pb)
    return out


def phase_section(m: Mapping[str, Any]) -> str:
    from rhapso_core.qc.html import fmt, table

    cols = [("link", lambda r: r["name"], "l"), ("r", lambda r: r["r"], ""),
            ("shift x", lambda r: r["shift_x"], ""), ("shift y", lambda r: r["shift_y"], ""),
            ("shift z", lambda r: r["shift_z"], ""), ("|shift|", lambda r: r["shift_length"], ""),
            ("level", lambda r: r["level"], ""), ("refined at", lambda r: r["refined_level"], ""),
            ("residual after", lambda r: r["residual"], ""), ("status", lambda r: r["status"], "l"),
            ("reason", lambda r: r["reason"], "l")]
    return ('<section id="phase"><h2>Phase-correlation links</h2>'
            f'<p>{m["n_used"]} of {m["n_pairs"]} pairs gave a usable link; correlation r of the used links: '
            f'min {fmt(m["r_min"])}, median {fmt(m["r_median"])}. Largest residual after the run: '
            f'{fmt(m["residual_max"])} (world units).</p>'
            '<p class="note">Shift: how far view b had to move against view a (world units) to match the '
            "overlap, measured by phase correlation and verified by normalised cross-correlation (r). Residual: "
            "distance between that shift and the relative motion the run gave the two views.</p>"
            + table(m["links"], cols, lambda r: "" if r["status"] == "ok" else "flag")
            + "</section>")
