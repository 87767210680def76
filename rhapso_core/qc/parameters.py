"""The QC report's table of resolved parameters: value, source (user / auto / fallback) and reason."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

__all__ = ["parameters_section", "load_resolved"]


def load_resolved(resolved: str | Mapping | None, storage_options=None) -> dict | None:
    """A resolution given as a dict or as the URI of ``resolved_params.json`` (None when absent)."""
    if resolved is None:
        return None
    if isinstance(resolved, Mapping):
        return dict(resolved)
    from rhapso_core.autoparams.store import read_resolution_dict

    return read_resolution_dict(str(resolved), storage_options)


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def parameters_section(resolved: Mapping) -> str:
    rows = "".join(
        f'<tr><td class="l"><code>{escape(p["stage"])}.{escape(p["name"])}</code></td>'
        f"<td>{escape(_value(p['value']))}</td><td class=\"l\">{escape(p['source'])}</td>"
        f'<td class="l">{escape(p["reason"])}</td></tr>'
        for p in resolved.get("parameters", [])
    )
    pre = resolved.get("prealignment") or {}
    note = ""
    if pre:
        note = (f"<p>Prealignment: <b>{'chosen' if pre.get('chosen') else 'not needed'}</b>: "
                f"{escape(str(pre.get('reason', '')))}</p>")
    secs = resolved.get("seconds")
    took = f" (resolved in {secs:.2f} s)" if isinstance(secs, (int, float)) else ""
    return ('<section id="parameters"><h2>Resolved parameters</h2>'
            f"<p>Parameters derived from this dataset before detection{took}; a value the user set always "
            "wins.</p><table><thead><tr><th>parameter</th><th>value</th><th>source</th><th>reason</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{note}</section>")
