"""Where a run writes: derived from its output path, never next to (or over) its input."""

from __future__ import annotations

from rhapso_core.output_layout import (  # noqa: F401  (the names flows and the CLI import from here)
    REPORT_NAME,
    alignment_layout,
    default_aligned_xml,
    fused_xml_path,
    join,
    lock_path,
    parent,
)
from rhapso_core.pipeline.interrupted_writes import sweep_interrupted_writes


def check_not_input(out: str, xml: str, what: str) -> None:
    """Refuse an output that is the input XML, compared after resolving symlinks and ``..``."""
    from rhapso_core.pipeline.input_guard import InputPath, check_outputs, canonical_path

    check_outputs([(out, what)], [InputPath(canonical_path(xml), "the input XML")])


def alignment_outputs(out_xml: str, what: str = "--out") -> list[tuple[str, str]]:
    """Every path an alignment into ``out_xml`` writes, with what it is (for refusals)."""
    from rhapso_core.intensity.store import default_container
    from rhapso_core.pipeline.publish import staged_name

    layout = alignment_layout(out_xml)
    return [(out_xml, f"{what} (the solved XML)"), (staged_name(out_xml), "the staged solved XML it writes"),
            (default_container(out_xml), "the intensity coefficients it writes (intensity.enabled)"),
            (layout["store"], "the point store it writes"),
            (layout["n5"], "the BigStitcher interest-point export it writes"),
            (layout["work"], "the folder of per-round XMLs it writes"),
            (layout["flatfield"], "the flat-field images it estimates (alignment.flatfield)"),
            (join(layout["folder"], REPORT_NAME), "the QC report it writes"),
            (lock_path(layout["folder"]), "its output lock")]


def fusion_outputs(out: str, what: str = "--out") -> list[tuple[str, str]]:
    """The fused OME-Zarr and the BigStitcher XML written beside it."""
    return [(out, f"{what} (the fused OME-Zarr)"), (fused_xml_path(out), "the fused image's XML it writes"),
            (lock_path(parent(out)), "its output lock")]


def fusion_intensity_outputs(out: str) -> list[tuple[str, str]]:
    """What a fusion with ``intensity.enabled`` also writes: the corrected copy of the input XML and
    its intensity coefficients, beside the fused image."""
    from flows.fusion import intensity_xml_path
    from rhapso_core.intensity.store import default_container

    xml = intensity_xml_path(out)
    return [(xml, "the intensity-corrected input XML it writes (intensity.enabled)"),
            (default_container(xml), "the intensity coefficients it writes (intensity.enabled)")]


def guard_outputs(xml: str, outputs: list[tuple[str, str]], data_roots: list[str] | None = None) -> None:
    """The one input guard (see :mod:`rhapso_core.pipeline.input_guard`): refuse before writing.

    With data roots configured (``runtime.data_roots`` or ``$RHAPSO_DATA_ROOTS``), every input
    and output must also resolve inside one of them.
    """
    from rhapso_core.pipeline.input_guard import check_data_roots, configured_roots, guard

    inputs = guard(xml, outputs)
    roots = configured_roots(data_roots)
    if roots:
        check_data_roots([(i.path, i.what) for i in inputs] + list(outputs), roots)


def clear_dead_run_temporaries(lock: dict, out_xml: str, fused: str | None = None) -> list[str]:
    """After taking over a killed run's lock, remove the temporaries its interrupted writes left.

    Only the run's own outputs are searched: the point store, the work folder, the estimated
    flat field's folder and the fused image recursively, the XML's folder at its top level (it
    may hold the input dataset).
    """
    layout = alignment_layout(out_xml)
    trees = [layout["store"], layout["work"], layout["flatfield"]] + ([fused] if fused else [])
    return _sweep_after_takeover(lock, trees, [layout["folder"]])


def clear_dead_fusion_temporaries(lock: dict, fused: str) -> list[str]:
    """As :func:`clear_dead_run_temporaries` for a fusion: the fused image recursively, the folder
    of its XML at its top level."""
    return _sweep_after_takeover(lock, [fused], [parent(fused)])


def _sweep_after_takeover(lock: dict, trees: list[str], folders: list[str]) -> list[str]:
    if "took_over" not in lock:
        return []
    removed = sweep_interrupted_writes(trees=trees, folders=folders)
    if removed:
        print(f"took over the output lock of dead run {lock['took_over'].get('run_id')}: "
              f"removed {len(removed)} temporary file(s) its interrupted writes left")
    return removed
