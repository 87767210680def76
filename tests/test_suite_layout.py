"""The suite runs without __init__.py files (rootdir imports), so module basenames must be unique."""

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    here = Path(__file__).resolve().parent
    names = Counter(p.name for p in here.rglob("*.py") if p.name != "conftest.py")
    clashes = sorted(n for n, c in names.items() if c > 1)
    assert not clashes, f"two test modules share a basename (pytest would refuse to collect): {clashes}"
