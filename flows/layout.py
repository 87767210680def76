"""Where a run writes: derived from its output path, never next to (or over) its input."""

from __future__ import annotations

import os
import posixpath

from rhapso_core.io import is_s3


def _dirname(uri: str) -> str:
    return posixpath.dirname(uri.rstrip("/")) if is_s3(uri) else os.path.dirname(os.path.abspath(uri))


def _join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_s3(base) else os.path.join(base, *parts)


def default_aligned_xml(xml: str) -> str:
    """``data.xml`` -> ``data.aligned.xml`` beside it."""
    stem = xml[:-4] if xml.endswith(".xml") else xml
    return stem + ".aligned.xml"


def alignment_layout(out_xml: str) -> dict[str, str]:
    """Point store, N5 export and per-round XMLs next to the solved XML."""
    folder = _dirname(out_xml)
    stem = posixpath.basename(out_xml)
    stem = stem[:-4] if stem.endswith(".xml") else stem
    work = _join(folder, f"{stem}.rhapso")
    return {
        "folder": folder,
        "work": work,
        "store": _join(folder, "interestpoints.zarr"),
        "n5": _join(folder, "interestpoints.n5"),
        "round_xml": _join(work, "{index:02d}-{kind}.xml"),
    }


def check_not_input(out: str, xml: str, what: str) -> None:
    """Refuse an output that is the input: outputs never overwrite inputs."""
    same = out == xml or (not is_s3(out) and not is_s3(xml) and os.path.abspath(out) == os.path.abspath(xml))
    if same:
        raise ValueError(f"{what} '{out}' is the input XML: outputs never overwrite inputs")
