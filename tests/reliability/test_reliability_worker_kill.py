"""A Ray worker SIGKILLed during detection and during fusion: the run ends with the clean run's bytes.

The kill comes from a worker setup hook installed by conftest (``rel_ray``):
armed by a marker file, the first detection chunk computed in any worker kills
that worker before returning its result, and the first fused block kills its
worker after writing the block's data but before its completion marker (the
half-written case the block markers exist for).

What reports it: Ray sees a system failure and re-executes the task (tasks have
``max_retries=3`` for system failures by default); the re-execution runs the same
Prefect task run id again. Prefect's record shows one Running -> Completed with
``run_count == 1``: the kill is visible only in Ray's raylet log ("A worker died
or was killed while executing a task ... There are 3 retries remaining").
"""

from __future__ import annotations

import fsspec
import psutil
from reliability_helpers import (
    FIGURES,
    RUN_OVERRIDES,
    assert_same_registrations,
    diff_digests,
    folder_hash,
    outputs_digest,
    task_runs,
)


def test_kill_worker_during_detection_and_fusion(rel_ray, kill_marks, rel_dataset, reference_run, rel_tmp):
    from flows.stitch import stitch

    for tag in ("detect", "fuse"):
        (kill_marks / f"killed-{tag}").unlink(missing_ok=True)
        (kill_marks / f"arm-{tag}").touch()
    input_hash = folder_hash(rel_dataset.root)
    before = {r["id"] for r in task_runs()}
    out = rel_tmp / "killed-run"
    try:
        result = stitch(str(rel_dataset.xml), str(out), overrides=RUN_OVERRIDES)  # on the session's Ray
    finally:
        for tag in ("detect", "fuse"):
            (kill_marks / f"arm-{tag}").unlink(missing_ok=True)

    # Both kills happened, each in its own worker, and those processes are gone.
    pids = {tag: int((kill_marks / f"killed-{tag}").read_text()) for tag in ("detect", "fuse")}
    assert pids["detect"] != pids["fuse"]
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids.values()), pids

    # Same bytes as the clean run (0 differing objects tolerated); same transforms to 1e-9.
    fs = fsspec.filesystem("file")
    diff = diff_digests(outputs_digest(fs, str(out)), outputs_digest(fs, reference_run["out"]))
    assert not diff, diff[:10]
    assert_same_registrations(result["aligned_xml"], reference_run["result"]["aligned_xml"], atol=1e-9)
    assert folder_hash(rel_dataset.root) == input_hash, "input dataset modified"

    # Prefect's view: every task run completed; the killed attempts left no failed state.
    runs = [r for r in task_runs() if r["id"] not in before]
    assert runs and all(r["state"] in ("Completed", "Cached") for r in runs), [(r["name"], r["state"]) for r in runs]
    detect_runs = [r for r in runs if r["name"].startswith("detect-t")]
    fuse_runs = [r for r in runs if r["name"].startswith("fuse-unit")]
    assert detect_runs and fuse_runs
    FIGURES["Ray worker kills"] = (
        f"2 workers SIGKILLed (detection pid {pids['detect']}, fusion pid {pids['fuse']}); Ray re-ran both tasks; "
        f"Prefect run_count of those task runs: detect max {max(r['run_count'] for r in detect_runs)}, "
        f"fuse max {max(r['run_count'] for r in fuse_runs)}; outputs byte-identical")
