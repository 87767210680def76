"""A stitch flow run killed (SIGKILL, process group and Ray with it) after detection, then
run again: it skips the cached detection and ends with the outputs of a clean run."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import procs
from orch_data import DEV_OVERRIDES

pytestmark = pytest.mark.slow

RUN_STITCH = """
import sys
from flows.stitch import stitch
xml, out, name, params_file, *overrides = sys.argv[1:]
stitch.with_options(flow_run_name=name)(xml, out, params_file=params_file, overrides=overrides)
"""


def _start(server, data, out: Path, name: str, storage: Path, log: Path) -> subprocess.Popen:
    # Each scenario has its own result storage: the clean run must not see the
    # cached results of the killed one (the cache key does not include `out`).
    env = server.client_env(PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(storage), PREFECT_LOGGING_LEVEL="INFO")
    cmd = [sys.executable, "-c", RUN_STITCH, str(data.xml), str(out), name, "deployments/presets/dev.yml",
           *DEV_OVERRIDES]
    return procs.spawn(cmd, env, log)


def _flow_run(server, name: str) -> dict | None:
    status, runs = server.request("POST", "/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
    assert status == 200, runs
    return runs[0] if runs else None


def _task_runs(server, parent_id: str, name_like: str) -> list[dict]:
    """Task runs named like ``name_like`` in the stage subflows of a flow run."""
    status, subs = server.request("POST", "/flow_runs/filter",
                                  {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}})
    assert status == 200, subs
    ids = [s["id"] for s in subs]
    if not ids:
        return []
    status, runs = server.request("POST", "/task_runs/filter", {
        "flow_runs": {"id": {"any_": ids}}, "task_runs": {"name": {"like_": name_like}}})
    assert status == 200, runs
    return runs


def _settled_task_runs(server, parent_id: str, name_like: str, n: int, timeout: float = 60) -> list[dict]:
    """The ``n`` task runs once all are final: task states reach the server as events,
    recorded a moment after the process that ran them may already have exited."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _task_runs(server, parent_id, name_like)
        if len(runs) >= n and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(1)


def _stored_views(store: Path) -> int:
    """Views with interest points in the point store (0 while it does not exist yet)."""
    from rhapso_core.pointstore import PointStore

    if not (store / "zarr.json").exists():
        return 0
    import warnings

    try:
        with warnings.catch_warnings():  # groups being written right now are not complete yet
            warnings.filterwarnings("ignore", message=".*not recognized as a component", category=UserWarning)
            return len(PointStore(str(store)).list_views("beads"))
    except (OSError, ValueError, KeyError):
        return 0


def _wait(proc: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.kill(proc)
        raise AssertionError(f"flow process still running after {timeout} s:\n{procs.tail(log)}") from None
    assert rc == 0, f"flow process exited with {rc}:\n{procs.tail(log)}"


def _zarr_arrays(root: Path) -> dict[str, np.ndarray]:
    import warnings

    import zarr

    out = {}

    def walk(group, prefix=""):
        for name, arr in group.arrays():
            out[prefix + name] = arr[...]
        for name, sub in group.groups():
            walk(sub, prefix + name + "/")

    with warnings.catch_warnings():
        # The fusion's block markers (".rhapso") sit inside the store, outside the hierarchy.
        warnings.filterwarnings("ignore", message=".*not recognized as a component", category=UserWarning)
        walk(zarr.open_group(str(root), mode="r"))
    return out


@pytest.mark.heavy  # 58 s; a killed flow process re-run in place: reliability/test_reliability_concurrency.py
def test_killed_run_resumes_with_identical_outputs(prefect_server, tiny_dataset, tmp_path):
    server = prefect_server
    tag = uuid.uuid4().hex[:8]
    n_views = 4
    clean_dir, resume_dir = tmp_path / "clean" / "out", tmp_path / "resume" / "out"  # same depth: same relative paths

    clean = _start(server, tiny_dataset, clean_dir, f"clean-{tag}", tmp_path / "clean" / "results",
                   tmp_path / "clean.log")
    victim_name = f"killed-{tag}"
    victim_log = tmp_path / "killed.log"
    victim = _start(server, tiny_dataset, resume_dir, victim_name, tmp_path / "resume" / "results", victim_log)
    try:
        # Kill as soon as every view's points are in the store (detection finished, its
        # chunk results persisted; matching, solving and fusion still to come). Read on
        # disk: task states reach the API with a lag.
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert victim.poll() is None, f"the flow ended before it could be killed:\n{procs.tail(victim_log)}"
            if _stored_views(resume_dir / "interestpoints.zarr") == n_views:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"detection did not finish in time:\n{procs.tail(victim_log)}")
        procs.kill(victim)
        assert victim.returncode == -9, victim.returncode
        killed = _flow_run(server, victim_name)
        # Nobody told the server: the killed run stays Running (no aligned XML yet).
        assert killed["state_type"] == "RUNNING", killed["state_type"]
        assert not (resume_dir / "dataset.aligned.xml").exists()

        resumed_name = f"resumed-{tag}"
        resumed_log = tmp_path / "resumed.log"
        resumed = _start(server, tiny_dataset, resume_dir, resumed_name, tmp_path / "resume" / "results", resumed_log)
        try:
            _wait(resumed, resumed_log, timeout=240)
        finally:
            procs.kill(resumed)
        _wait(clean, tmp_path / "clean.log", timeout=240)
    finally:
        procs.kill(victim)
        procs.kill(clean)

    # The re-run took detection from the cache; the clean run computed it.
    resumed_run = _flow_run(server, resumed_name)
    assert resumed_run["state_type"] == "COMPLETED"
    states = [t["state_name"] for t in _settled_task_runs(server, resumed_run["id"], "detect-t%", n_views)]
    assert len(states) == n_views and all(s == "Cached" for s in states), states
    clean_id = _flow_run(server, f"clean-{tag}")["id"]
    clean_states = [t["state_name"] for t in _settled_task_runs(server, clean_id, "detect-t%", n_views)]
    assert len(clean_states) == n_views and all(s == "Completed" for s in clean_states), clean_states

    # Identical outputs, exactly (no tolerance: the pipeline is deterministic).
    name = "dataset.aligned.xml"
    assert (resume_dir / name).read_bytes() == (clean_dir / name).read_bytes(), "solved XML differs from a clean run's"
    a, b = _zarr_arrays(clean_dir / "fused.ome.zarr"), _zarr_arrays(resume_dir / "fused.ome.zarr")
    assert a.keys() == b.keys() and len(a) >= 2, (a.keys(), b.keys())
    for key in a:
        assert a[key].shape == b[key].shape and np.array_equal(a[key], b[key]), f"fused array {key} differs"
