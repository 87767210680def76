"""The fusion flow takes its folder's output lock and, taking over a dead run's, clears its temporaries.

The flow's body runs as written (``.fn``; no Prefect API), with the fusion itself replaced by a
probe that records what it found: the lock held and the temporaries gone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from rhapso_core.output_layout import lock_path, parent
from rhapso_core.pipeline.run_lock import OutputLockedError, read_lock

OVERRIDES = ["runtime.use_ray=false"]


@pytest.fixture(scope="module")
def xml(tmp_path_factory):
    from rhapso_core.synthetic import SyntheticParams, write_dataset

    root = tmp_path_factory.mktemp("fusion_lock")
    ds = write_dataset(root / "data", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(64, 32, 8), n_levels=1,
                                                      chunk_size_xyz=(32, 32, 8), overlap=0.25, blob_count=5, fibre_count=0))
    return str(ds.xml)


def _write_lock(folder: str, pid: int) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(lock_path(folder), "w") as f:
        json.dump({"run_id": "other-run", "host": socket.gethostname(), "pid": pid, "started": "earlier"}, f)


def test_a_live_runs_lock_refuses_the_fusion_before_anything_is_written(xml, tmp_path, monkeypatch):
    import flows.fusion

    out = str(tmp_path / "out" / "fused.ome.zarr")
    _write_lock(parent(out), os.getpid())  # a live process: this one, under another run id
    monkeypatch.setattr(flows.fusion, "run_fusion", lambda *a, **k: pytest.fail("fused while another run held the lock"))
    with pytest.raises(OutputLockedError, match="other-run"):
        flows.fusion.fusion.fn(xml, out, overrides=OVERRIDES)
    assert sorted(os.listdir(parent(out))) == [os.path.basename(lock_path(parent(out)))]


def test_a_dead_runs_lock_is_taken_over_and_its_interrupted_writes_removed(xml, tmp_path, monkeypatch):
    import flows.fusion

    out = str(tmp_path / "out" / "fused.ome.zarr")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(parent(out), dead.pid)
    os.makedirs(os.path.join(out, "0"))
    partial = os.path.join(out, "0", "c.0." + "ab" * 16 + ".partial")  # zarr's LocalStore temporary
    staged = os.path.join(parent(out), ".fused.xml.k3j9x0q1.tmp")  # an atomic XML write's temporary
    kept = os.path.join(parent(out), "notes.tmp")  # not a temporary's shape: someone's file
    for p in (partial, staged, kept):
        open(p, "w").close()
    seen = {}

    def probe(xml_, out_, p, overwrite=False, estimate_intensity=False):
        seen["lock"] = read_lock(parent(out_))
        seen["left"] = [q for q in (partial, staged, kept) if os.path.exists(q)]
        return {"output": out_}

    monkeypatch.setattr(flows.fusion, "run_fusion", probe)
    result = flows.fusion.fusion.fn(xml, out, overrides=OVERRIDES)
    assert result["output"] == out and set(result) <= {"output", "executor"}, result
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["run_id"] != "other-run"
    assert seen["left"] == [kept]
    assert read_lock(parent(out)) is None, "released after the run"
