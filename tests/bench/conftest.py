"""Importing a benchmark module from ``bench/`` inside the test process."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numba
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_module(monkeypatch):
    """``bench_module(name)`` imports ``bench/name.py``.

    The benchmarks ask for one numba thread at import when nothing else did; in a test
    process numba may have started its threads already, and every compile after the count
    changed raises. The count stays the process's for the test (and is restored after)."""
    monkeypatch.setenv("NUMBA_NUM_THREADS", str(numba.config.NUMBA_NUM_THREADS))

    def load(name: str):
        sys.path.insert(0, str(ROOT / "bench"))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(ROOT / "bench"))

    return load
