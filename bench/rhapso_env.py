"""The published ``rhapso==0.4.5`` in its own virtual environment, for the comparisons in ``bench/``.

Rhapso pins NumPy 1.x, Ray 2.9 and other versions that cannot share this project's
environment, so every benchmark runs it in ``bench/_venvs/rhapso045`` (git-ignored),
made on first use with ``python -m venv`` and ``pip install rhapso==0.4.5``.

Usage::

    from rhapso_env import rhapso_python          # bench/ is on sys.path when a bench runs
    py = rhapso_python()                          # Path to the venv's python, or None
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / "_venvs" / "rhapso045"
VERSION = "0.4.5"
_PROBE = "import Rhapso.solver.global_optimization, Rhapso.detection.difference_of_gaussian"
# rhapso 0.4.5 stores points and matches as Parquet (pandas + pyarrow) but pins NumPy 1.26,
# while pip resolves pyarrow to a release that needs NumPy 2: the store then cannot be
# written ("pyarrow requires NumPy 2.0 or newer"). The last pyarrow series built for
# NumPy 1.x fixes that without touching Rhapso's own pins.
_PYARROW_PROBE = "import pyarrow.parquet"
_PYARROW_PIN = "pyarrow<21"


def venv_python() -> Path:
    """Where the venv's interpreter is (whether or not it exists yet)."""
    return VENV / "bin" / "python"


def rhapso_python(install: bool = True, quiet: bool = False) -> Path | None:
    """The venv's python with ``Rhapso`` importable; create it when absent and ``install``.

    Returns None (after saying why on stderr) when it cannot be made, so a benchmark
    can go on without the comparison.
    """
    py = venv_python()
    if py.exists() and subprocess.run([str(py), "-c", _PROBE], capture_output=True).returncode == 0:
        return _with_pyarrow(py) if install else py
    if not install:
        return None
    if not quiet:
        print(f"creating {VENV} and installing rhapso=={VERSION} ...", file=sys.stderr, flush=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"rhapso=={VERSION}"])
    if r.returncode != 0 or subprocess.run([str(py), "-c", _PROBE], capture_output=True).returncode != 0:
        print(f"rhapso {VERSION} could not be installed in {VENV}; skipping that comparison", file=sys.stderr)
        return None
    return _with_pyarrow(py)


def _with_pyarrow(py: Path) -> Path | None:
    if subprocess.run([str(py), "-c", _PYARROW_PROBE], capture_output=True).returncode == 0:
        return py
    print(f"installing {_PYARROW_PIN} into {VENV} (rhapso 0.4.5's Parquet store needs one built for NumPy 1.x)",
          file=sys.stderr, flush=True)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", _PYARROW_PIN])
    if r.returncode != 0 or subprocess.run([str(py), "-c", _PYARROW_PROBE], capture_output=True).returncode != 0:
        print(f"could not install {_PYARROW_PIN} in {VENV}; skipping the Rhapso comparison", file=sys.stderr)
        return None
    return py
