"""Every path a run writes, and how a path is joined onto an output folder or URI.

One module owns the names (the point store, the per-round XMLs, the QC report, the lock,
the run record, the fused image and its XML, the staged XML) so the flows, the CLI and the
QC report cannot drift apart. Local paths stay as the user gave them (relative ones are
printed relative), except where a folder is taken from a file's path (:func:`parent`);
URLs (``s3://``) are joined with ``/`` whatever the OS.
"""

from __future__ import annotations

import os
import posixpath

__all__ = [
    "LOCK_NAME", "RECORD_NAME", "REPORT_NAME", "SUMMARY_NAME", "STORE_NAME", "N5_NAME", "FUSED_NAME", "ROUND_XML",
    "is_remote", "join", "parent", "xml_stem", "default_aligned_xml", "alignment_layout", "round_xml_name",
    "split_outputs", "stitch_outputs", "fused_xml_path", "lock_path", "record_path", "report_path",
    "summary_path", "staged_name",
]

LOCK_NAME = ".rhapso-run.lock"  # the output folder's lock (rhapso_core.pipeline.run_lock)
RECORD_NAME = ".rhapso-run.json"  # which input and parameters filled the folder (run_record)
REPORT_NAME = "qc_report.html"
SUMMARY_NAME = "summary.json"
STORE_NAME = "interestpoints.zarr"
N5_NAME = "interestpoints.n5"  # BigStitcher's copy of the points
FUSED_NAME = "fused.ome.zarr"
ROUND_XML = "{index:02d}-{kind}.xml"  # alignment round ``index`` (from 1) of ``kind``, in the work folder


def is_remote(uri: str) -> bool:
    """A URL (``s3://``, ``gs://``, ...) rather than a local path."""
    return "://" in str(uri)


def join(base: str, *parts: str) -> str:
    """``parts`` joined onto ``base`` with ``/`` for a URL, the OS separator for a local path.

    Unlike :func:`rhapso_core.io.uri.join_uri` a local path is not made absolute, so the
    paths a run reports are the ones the user gave.
    """
    base = str(base)
    return posixpath.join(base.rstrip("/"), *parts) if is_remote(base) else os.path.join(base, *parts)


def parent(uri: str) -> str:
    """The folder holding ``uri`` (absolute for a local path)."""
    uri = str(uri)
    return posixpath.dirname(uri.rstrip("/")) if is_remote(uri) else os.path.dirname(os.path.abspath(uri))


def _name(uri: str) -> str:
    return posixpath.basename(str(uri).rstrip("/")) if is_remote(uri) else os.path.basename(os.path.abspath(uri))


def xml_stem(xml: str) -> str:
    """``.../dataset.xml`` -> ``dataset``."""
    name = posixpath.basename(str(xml))
    return name[:-4] if name.endswith(".xml") else name


def default_aligned_xml(xml: str) -> str:
    """``data.xml`` -> ``data.aligned.xml`` beside it."""
    stem = xml[:-4] if xml.endswith(".xml") else xml
    return stem + ".aligned.xml"


def round_xml_name(index: int, kind: str) -> str:
    """The XML of alignment round ``index`` (from 1) of ``kind``, in the run's work folder."""
    return ROUND_XML.format(index=index, kind=kind)


def alignment_layout(out_xml: str) -> dict[str, str]:
    """Point store, N5 export and per-round XMLs next to the solved XML."""
    folder = parent(out_xml)
    work = join(folder, f"{xml_stem(out_xml)}.rhapso")
    return {
        "folder": folder,
        "work": work,
        "store": join(folder, STORE_NAME),
        "n5": join(folder, N5_NAME),
        "round_xml": join(work, ROUND_XML),
        "resolved_params": join(work, "resolved_params.json"),
        # An estimated flat field (alignment.flatfield): beside the solved XML, which names its images.
        "flatfield": join(folder, f"{xml_stem(out_xml)}.flatfield"),
    }


def split_outputs(work: str) -> tuple[str, str]:
    """The split-affine round's split XML and its point store, in the run's work folder."""
    return join(work, "split.xml"), join(work, "split.interestpoints.zarr")


def stitch_outputs(out_dir: str, xml: str) -> tuple[str, str]:
    """The aligned XML (named after the input) and the fused image a stitch writes into ``out_dir``."""
    return join(out_dir, f"{xml_stem(xml)}.aligned.xml"), join(out_dir, FUSED_NAME)


def fused_xml_path(out: str) -> str:
    """``.../fused.ome.zarr`` -> ``.../fused.xml`` beside it."""
    stem = out.rstrip("/")
    for suffix in (".ome.zarr", ".zarr"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem + ".xml"


def lock_path(out_dir: str) -> str:
    """Where the lock of ``out_dir`` lives."""
    return join(out_dir, LOCK_NAME)


def record_path(out_dir: str) -> str:
    """Where the run record of ``out_dir`` lives."""
    return join(out_dir, RECORD_NAME)


def report_path(solved_xml: str) -> str:
    """``qc_report.html`` in the solved XML's folder (local path or URL)."""
    return join(parent(solved_xml), REPORT_NAME)


def summary_path(out_dir: str) -> str:
    """The full JSON result of a stitch or demo into ``out_dir``."""
    return join(out_dir, SUMMARY_NAME)


def staged_name(path: str) -> str:
    """``.../dataset.aligned.xml`` -> ``.../.dataset.aligned.staged.xml`` (same folder)."""
    name = _name(path)
    stem, ext = (name[:-4], ".xml") if name.endswith(".xml") else (name, "")
    return join(parent(path), f".{stem}.staged{ext}")
