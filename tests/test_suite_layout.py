"""The suite runs without __init__.py files (rootdir imports), so module basenames must be unique."""

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    here = Path(__file__).resolve().parent
    names = Counter(p.name for p in here.rglob("*.py") if p.name != "conftest.py")
    clashes = sorted(n for n, c in names.items() if c > 1)
    assert not clashes, f"two test modules share a basename (pytest would refuse to collect): {clashes}"


def test_no_module_imports_conftest_by_name():
    """Several folders have a conftest.py: `from conftest import` picks whichever came first."""
    import re

    statement = re.compile(r"^\s*(from\s+conftest\s+import|import\s+conftest\b)", re.MULTILINE)
    here = Path(__file__).resolve().parent
    offenders = [str(p.relative_to(here)) for p in here.rglob("*.py") if statement.search(p.read_text())]
    assert not offenders, offenders
