"""Temporaries left by a killed run's atomic writes are removed by the run that takes over its lock."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import fsspec
import numpy as np
import zarr

from flows.layout import alignment_layout, clear_dead_run_temporaries
from rhapso_core.pipeline import run_lock
from rhapso_core.pipeline.interrupted_writes import is_interrupted_write, sweep_interrupted_writes


def _zarr_temp_name(target: str) -> str:
    """The name zarr's LocalStore gives the temporary of ``target`` (pathlib ``with_suffix``)."""
    stem = target.rsplit(".", 1)[0] if "." in target else target
    return f"{stem}.{uuid.uuid4().hex}.partial"


def test_names_recognised():
    assert is_interrupted_write(_zarr_temp_name("zarr.json"))
    assert is_interrupted_write(f"0.{uuid.uuid4().hex}.partial")
    assert is_interrupted_write(".data.aligned.xml.k3j_9x0a.tmp")  # tempfile.mkstemp's 8 characters
    for kept in ("zarr.json", "0", "notes.partial", f"x.{uuid.uuid4().hex[:31]}.partial",
                 "data.xml.tmp", ".data.xml.tmp", "dataset.xml"):
        assert not is_interrupted_write(kept), kept


def test_sweep_only_removes_temporaries_under_outputs(tmp_path):
    out = tmp_path / "out"
    store = out / "interestpoints.zarr"
    zarr.open_group(str(store), mode="w").create_array("a", shape=(4,), chunks=(2,), dtype="u2")[:] = 1
    chunk_dir = store / "a" / "c"
    planted_tree = [chunk_dir / f"0.{uuid.uuid4().hex}.partial", store / _zarr_temp_name("zarr.json")]
    planted_top = out / ".data.aligned.xml.ab12cd34.tmp"
    # The input dataset may live in the same folder: its files are never touched.
    inputs = out / "images.ome.zarr" / f"zarr.{uuid.uuid4().hex}.partial"
    inputs.parent.mkdir(parents=True)
    for p in [*planted_tree, planted_top, inputs]:
        p.write_bytes(b"half-written")
    before = {p.relative_to(store) for p in store.rglob("*")} - {p.relative_to(store) for p in planted_tree}

    removed = sweep_interrupted_writes(trees=[str(store), str(tmp_path / "absent"), "s3://bucket/x"],
                                       folders=[str(out)])

    assert sorted(removed) == sorted(str(p) for p in [*planted_tree, planted_top])
    assert inputs.exists()
    assert {p.relative_to(store) for p in store.rglob("*")} == before
    np.testing.assert_array_equal(zarr.open_array(str(store / "a"), mode="r")[:], 1)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_takeover_clears_the_dead_runs_temporaries(tmp_path):
    out_xml = str(tmp_path / "out" / "data.aligned.xml")
    layout = alignment_layout(out_xml)
    fused = str(tmp_path / "out" / "fused.ome.zarr")
    planted = [f"{layout['store']}/tpId_0_viewSetupId_0/beads/interestpoints/{_zarr_temp_name('zarr.json')}",
               f"{fused}/0/c/0/0/0.{uuid.uuid4().hex}.partial",
               f"{layout['work']}/.01-rigid.xml.qwerty12.tmp"]
    for p in planted:
        fsspec.filesystem("file").makedirs(p.rsplit("/", 1)[0], exist_ok=True)
        fsspec.filesystem("file").pipe_file(p, b"half-written")

    # A live run's lock: nothing is taken over, nothing removed (its writers may be mid-rename).
    with run_lock.output_lock(layout["folder"], "run-live") as lock:
        assert clear_dead_run_temporaries(lock, out_xml, fused) == []
    assert all(fsspec.filesystem("file").exists(p) for p in planted)

    # A lock left by a killed process of this host: the new holder removes exactly the planted files.
    dead = run_lock.acquire(layout["folder"], "run-dead")
    fsspec.filesystem("file").pipe_file(run_lock.lock_path(layout["folder"]),
                                        json.dumps({**dead, "pid": _dead_pid()}).encode())
    with run_lock.output_lock(layout["folder"], "run-new") as lock:
        assert lock["took_over"]["run_id"] == "run-dead"
        assert sorted(clear_dead_run_temporaries(lock, out_xml, fused)) == sorted(planted)
    assert not any(fsspec.filesystem("file").exists(p) for p in planted)
