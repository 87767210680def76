"""The end of a long command: a compact summary for a person (stages and times, pairs
matched, errors with their gauge, the QC verdict, where the outputs are) and the full
result as JSON in a file beside the outputs (``--json`` prints the JSON instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from flows.progress import listening
from rhapso_cli.progress import ProgressDisplay, _duration


def write_json(uri: str, obj: Any) -> str:
    """Atomically (a temporary beside it, then a rename; a single PUT on object stores)."""
    text = json.dumps(obj, indent=2, default=str) + "\n"
    if "://" in uri:
        from rhapso_core.io import fs_for

        fs, path = fs_for(uri)
        fs.pipe_file(path, text.encode())
        return uri
    folder = os.path.dirname(os.path.abspath(uri))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".summary-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, uri)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return uri


def _n(count, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _num(v, digits: int = 3) -> str:
    return "-" if v is None else f"{float(v):.{digits}g}"


def _stage_lines(stages, width: int = 100, most: int = 3) -> list[str]:
    """Stage times, wrapped to ``most`` lines; numbered stages (pyramid levels) folded into one."""
    import re

    folded: list[tuple[str, int, float]] = []  # (name, count, seconds)
    for s in stages:
        name = re.sub(r" \d+$", "", s.what)
        if folded and folded[-1][0] == name and name != s.what:
            folded[-1] = (name, folded[-1][1] + 1, folded[-1][2] + s.seconds)
        else:
            folded.append((name, 1, s.seconds))
    parts = [f"{n}{f' (x{c})' if c > 1 else ''} {_duration(t)}" for n, c, t in folded]
    lines, cur = [], "  stages: "
    for i, part in enumerate(parts):
        if len(cur) + len(part) > width and cur.strip() != "stages:":
            if len(lines) == most - 1:
                cur += f"+{len(parts) - i} more"
                break
            lines.append(cur.rstrip("; "))
            cur = "          "
        cur += part + "; "
    lines.append(cur.rstrip("; "))
    return lines


def _result_parts(command: str, result: dict) -> tuple[dict, dict | None, dict | None]:
    """(the run's result, its alignment part, its fusion part), by what the command returns:
    ``align`` an :class:`~rhapso_core.pipeline.results.AlignmentSummary`'s JSON, ``fuse`` a
    :class:`~rhapso_core.pipeline.results.FusionSummary`'s, ``stitch`` both (``alignment``,
    ``fusion``) and ``demo`` its stitch's result (``stitch``)."""
    if command == "demo":
        result = result["stitch"]
    if command == "align":
        return result, result, None
    if command == "fuse":
        return result, None, result
    return result, result.get("alignment"), result.get("fusion")


def summary_lines(command: str, result: dict, display: ProgressDisplay | None, seconds: float,
                  json_path: str | None, score: dict | None = None) -> list[str]:
    """At most ~20 lines whatever the dataset's size (a screen), from the command's result."""
    lines = [f"rhapso {command}: done in {_duration(seconds)}"]
    dataset = result.get("dataset") if command == "demo" else None
    result, alignment, fusion = _result_parts(command, result)
    if display is not None and display.stages:
        lines += _stage_lines(display.stages)
    if alignment:
        counts = list((alignment.get("detection") or {}).values())
        if counts:
            lines.append(f"  interest points: {sum(counts)} in {len(counts)} views "
                         f"(fewest {min(counts)}, most {max(counts)})")
        for r in alignment.get("rounds", [])[:4]:
            lines.append(f"  {r.get('transform', 'round')}: {r.get('pairs_matched')}/{r.get('pairs')} pairs "
                         f"matched, solver error {_num(r.get('final_error'))} (world units)")
    if fusion:
        shape = "x".join(str(v) for v in fusion.get("shape_zyx", []))
        written = fusion.get("blocks_written")
        lines.append(f"  fused image: {shape} voxels (z,y,x), {_n(fusion.get('units'), 'work unit')}, "
                     f"{_n(written, 'block')} written this run" + (" (all reused from an earlier run)" if written == 0 else ""))
    if score:
        lines.append(f"  error vs ground truth ({score['gauge']} gauge, as in the QC report):")
        lines.append(f"    RMS {_num(score['rms_voxels'])} voxels = {_num(score['rms_um'])} um, "
                     f"max {_num(score['max_voxels'])} voxels = {_num(score['max_um'])} um "
                     f"(nominal positions: RMS {_num(score['nominal_rms_voxels'])} voxels)")
    executor = result.get("executor")
    if executor:
        lines.append(f"  tasks ran in {executor.get('where')} ({executor.get('reason')})")
    qc = result.get("qc") or (alignment or {}).get("qc")
    if qc:
        reasons = [r.get("message", "") for r in qc.get("reasons", []) if r.get("level") != "info"]
        lines.append(f"  QC verdict: {qc.get('verdict', '?').upper()}" + (f" ({reasons[0]})" if reasons else ""))
        if len(reasons) > 1:
            lines.append(f"    and {_n(len(reasons) - 1, 'more reason')} in the report")
    outs = [("dataset", dataset),
            ("aligned XML", result.get("aligned_xml") or (alignment or {}).get("output")),
            ("fused image", result.get("fused") or (fusion or {}).get("output")),
            ("interest points", (alignment or {}).get("store")),
            ("QC report", (qc or {}).get("report_uri")),
            ("full JSON", json_path)]
    lines.append("  outputs:")
    lines += [f"    {name}: {where}" for name, where in outs if where]
    return lines


class CommandRun:
    """Progress while a long command runs, then its summary (or JSON)."""

    def __init__(self, command: str, as_json: bool, stream=None):
        self.command = command
        self.as_json = as_json
        self.display = ProgressDisplay(stream=stream or sys.stderr)
        self.started = time.monotonic()

    @contextlib.contextmanager
    def progress(self) -> Iterator[None]:
        try:
            with listening(self.display):
                yield
        finally:
            self.display.close()

    def finish(self, result: dict, json_path: str, score: dict | None = None) -> None:
        if self.as_json:
            print(json.dumps(result, indent=2, default=str))
            return
        written = write_json(json_path, result)
        for line in summary_lines(self.command, result, self.display, time.monotonic() - self.started,
                                  written, score):
            print(line)
