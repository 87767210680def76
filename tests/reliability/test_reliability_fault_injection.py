"""Fault injection: a stitch interrupted at a random moment (SIGINT, SIGKILL, or a disk that
fills up), then run again into the same folder, ends byte-identical to a clean run.

Iterations cycle through the three faults, starting at a seeded one (so the one
iteration CI runs covers one, and all three come up across runs). Each draws its moment from a seeded generator
(the delay in seconds after the run took its output lock; for the full disk, the write
from which every write under the output folder fails with ENOSPC, out of the writes a
clean run makes), printed in the failure message so a failing draw can be replayed.
``RHAPSO_FAULT_ITERATIONS`` sets how many (default 1: CI time; the README's figures are from 9); ``RHAPSO_FAULT_SEED`` the seed.
Compared: the fused OME-Zarr, the point store and the N5 export byte for byte (zarr
consistency tokens aside, see reliability_helpers), the solved transforms to 1e-9.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
from reliability_helpers import FIGURES, assert_same_registrations, diff_digests, folder_hash, outputs_digest

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16))


def _env() -> dict:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


def _cmd(xml, out) -> list[str]:
    return [sys.executable, "-m", "rhapso_cli.main", "stitch", str(xml), "--out", str(out), "--no-ray",
            "--num-cpus", "2"]


HERE = Path(__file__).resolve().parent


def _diskfull_cmd(xml, out, n: int, count_file) -> list[str]:
    """The stitch, with every write under ``out`` failing with ENOSPC from the n-th on (0: count)."""
    return [sys.executable, str(HERE / "reliability_diskfull.py"), str(out), str(n), str(count_file), "--"] + \
        _cmd(xml, out)[3:]


def _run(xml, out, cmd=None) -> None:
    r = subprocess.run(cmd or _cmd(xml, out), capture_output=True, text=True, env=_env(), timeout=500)
    # 3: completed with a QC "fail" (small tiles may not match); outputs are compared byte for byte below.
    assert r.returncode in (0, 3), r.stderr[-2000:]


def _interrupt(xml, out, sig: int, delay: float) -> tuple[int | None, float]:
    """Start a stitch, send ``sig`` ``delay`` s after it holds its lock; (rc, seconds to stop)."""
    proc = subprocess.Popen(_cmd(xml, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True)
    lock, t_end = Path(out) / ".rhapso-run.lock", time.time() + 300
    while not lock.exists() and proc.poll() is None and time.time() < t_end:
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is not None:  # finished before the draw: nothing was interrupted
        return proc.returncode, 0.0
    t0 = time.time()
    os.killpg(proc.pid, sig)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    return proc.returncode, time.time() - t0


@pytest.mark.slow
def test_interrupted_stitch_reruns_identical_to_a_clean_run(rel_harness, write_dataset_copy, tmp_path):
    iterations = int(os.environ.get("RHAPSO_FAULT_ITERATIONS", "1"))
    seed = int(os.environ.get("RHAPSO_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
    rng = random.Random(seed)
    paths = write_dataset_copy("fault-injection", **SMALL)
    before = folder_hash(paths.root)
    clean = tmp_path / "clean"
    t0 = time.time()
    writes = tmp_path / "clean-writes"
    _run(paths.xml, clean, _diskfull_cmd(paths.xml, clean, 0, writes))  # counts the writes only
    clean_s = time.time() - t0
    n_writes = int(writes.read_text())
    fs = fsspec.filesystem("file")
    reference = outputs_digest(fs, str(clean))
    outcomes = []
    first = rng.randrange(3)
    for i in range(iterations):
        out = tmp_path / f"run{i}"
        kind = (first + i) % 3  # 0 SIGINT, 1 SIGKILL, 2 disk full
        if kind == 2:
            n = rng.randint(1, n_writes)
            draw = f"seed {seed}, iteration {i}: disk full from write {n} of {n_writes}"
            r = subprocess.run(_diskfull_cmd(paths.xml, out, n, tmp_path / f"writes{i}"), capture_output=True,
                               text=True, env=_env(), timeout=500)
            # Progress lines and warnings may come before it; the failure is one line, the last.
            last = r.stderr.strip().splitlines()[-1]
            assert r.returncode == 2 and last.startswith("rhapso stitch: error:") and "no space" in last, \
                f"{draw}: rc {r.returncode}: {r.stderr[-1500:]}"
            assert "Traceback" not in r.stderr, f"{draw}: {r.stderr[-1500:]}"
            assert not (out / ".rhapso-run.lock").exists(), f"{draw}: lock left behind"
            label = f"ENOSPC@write{n}/{n_writes}"
        else:
            sig = signal.SIGINT if kind == 0 else signal.SIGKILL
            delay = rng.uniform(0.0, max(1.0, 0.8 * clean_s))
            rc, stop_s = _interrupt(paths.xml, out, sig, delay)
            draw = f"seed {seed}, iteration {i}: {signal.Signals(sig).name} {delay:.1f} s after the lock"
            if sig == signal.SIGINT and rc is not None and rc not in (0, 3):  # 0 or 3: finished before the signal
                assert rc == 130 and stop_s < 15, f"{draw}: rc {rc}, stopped after {stop_s:.1f} s"
                assert not (out / ".rhapso-run.lock").exists(), f"{draw}: lock left behind"
            label = f"{signal.Signals(sig).name}@{delay:.1f}s"
        _run(paths.xml, out)
        diffs = diff_digests(reference, outputs_digest(fs, str(out)))
        assert not diffs, f"{draw}: re-run differs from the clean run: {diffs[:10]}"
        assert_same_registrations(str(clean / "dataset.aligned.xml"), str(out / "dataset.aligned.xml"))
        outcomes.append(f"{label}->identical")
    assert folder_hash(paths.root) == before, "the input folder was modified"
    FIGURES["fault injection (interrupt, re-run)"] = (
        f"{iterations}/{iterations} identical (seed {seed}: {', '.join(outcomes)})")
