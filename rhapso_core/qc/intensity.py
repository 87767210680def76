"""QC of intensity correction: each view's map (gains, offsets, spread over its cells), the
channels' flat fields, and how well overlapping views agreed before and after."""

from __future__ import annotations

from html import escape

import numpy as np

from rhapso_core.qc.html import fmt, table

__all__ = ["FIT_ATTR", "intensity_metrics", "intensity_section"]

FIT_ATTR = "rhapso_intensity_fit"  # root attribute of the coefficients container: the fit's figures


def intensity_metrics(solved_xml: str, storage_options: dict | None = None) -> dict | None:
    """The section's figures from the coefficients container beside ``solved_xml``; None if it has none."""
    from rhapso_core.intensity.store import DATASET, FLATFIELD_ATTR, default_container
    from rhapso_core.io import fs_for
    from rhapso_core.pointstore.n5 import N5Container

    uri = default_container(solved_xml)
    fs, path = fs_for(uri, storage_options)
    if not fs.exists(path):
        return None
    c = N5Container(uri, storage_options)
    views, flatfields = [], {}
    for sname in sorted(c.list(""), key=lambda n: (len(n), n)):
        if not sname.startswith("setup"):
            continue
        for tname in sorted(c.list(sname), key=lambda n: (len(n), n)):
            ds = f"{sname}/{tname}/{DATASET}"
            if not c.exists(f"{ds}/attributes.json"):
                continue
            arr = c.read_dataset(ds)
            a, b = arr[0], arr[1]
            ff = c.get_attributes(ds).get(FLATFIELD_ATTR)
            views.append({"view": f"t{tname[9:]} s{sname[5:]}", "gain": float(a.mean()), "gain_min": float(a.min()),
                          "gain_max": float(a.max()), "offset": float(b.mean()), "cells": int(a.size)})
            if ff is not None:
                flatfields[str(ff)] = ff
    return {"container": uri, "views": views, "flatfields": list(flatfields.values()),
            "fit": c.get_attributes("").get(FIT_ATTR, {})}


def intensity_section(m: dict) -> str:
    """The report's "Intensity correction" section."""
    gains = np.array([v["gain"] for v in m["views"]]) if m["views"] else np.zeros(0)
    spread = f"gains {fmt(float(gains.min()))} - {fmt(float(gains.max()))}" if gains.size else "no views"
    parts = [f'<section id="intensity"><h2>Intensity correction</h2><p>{len(m["views"])} views corrected; '
             f"{spread}; coefficients: {escape(m['container'])}</p>"]
    parts.append(table(m["views"], [("view", lambda r: r["view"], "l"), ("gain a", lambda r: r["gain"], ""),
                                     ("min a", lambda r: r["gain_min"], ""), ("max a", lambda r: r["gain_max"], ""),
                                     ("offset b", lambda r: r["offset"], ""), ("cells", lambda r: r["cells"], "")]))
    for ff in m["flatfields"]:
        parts.append(f"<p>Flat field (degree {ff['degree']}, dark level {fmt(ff['dark'])}): coefficients "
                     f"{escape(', '.join(f'{c:.4g}' for c in ff['coefficients']))} (F = 1 at the tile centre; "
                     f"{escape(_falloff(ff))}).</p>")
    pairs = m.get("fit", {}).get("pairs", [])
    if pairs:
        parts.append("<p>Overlap agreement (RMS of the relative difference, and mean ratio, of the two views):</p>")
        parts.append(table(pairs, [("pair", lambda r: r["pair"], "l"), ("samples", lambda r: r["n"], ""),
                                   ("RMS before", lambda r: r["rms_before"], ""), ("RMS after", lambda r: r["rms_after"], ""),
                                   ("ratio before", lambda r: r["ratio_before"], ""),
                                   ("ratio after", lambda r: r["ratio_after"], "")]))
    parts.append("</section>")
    return "".join(parts)


def _falloff(ff: dict) -> str:
    """The flat field where a reader judges it: the middles of the tile's edges and its corners."""
    from rhapso_core.intensity.model import FlatField

    f = FlatField.from_dict(ff)
    at = {"x edges": [(-1, 0), (1, 0)], "y edges": [(0, -1), (0, 1)], "corners": [(-1, -1), (1, -1), (-1, 1), (1, 1)]}
    return "; ".join(f"{name} {', '.join(f'{float(f.evaluate(u, w)):.3f}' for u, w in pts)}" for name, pts in at.items())
