"""Every deployment entrypoint loads as Prefect loads it, and its stage flows survive Ray workers.

Prefect loads ``flows/alignment.py:alignment`` as a top-level module (``alignment``), not as
``flows.alignment``. A function or class defined in that file and named by a stage flow's
body then cannot be unpickled on a Ray worker (``No module named 'alignment'``): the trap
that moved ``match_in_batches`` to ``flows/batched_matching.py`` and the pyramid to
``flows/pyramid.py``. This test finds the next one before a cluster does. No server needed.
"""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint
from prefect.tasks import Task

ROOT = Path(__file__).resolve().parents[2]


def _entrypoints() -> list[str]:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    found = sorted({d["entrypoint"] for d in spec["deployments"]})
    for extra in sorted((ROOT / "deployments").rglob("*.yaml")) + sorted((ROOT / "deployments").rglob("*.yml")):
        doc = yaml.safe_load(extra.read_text()) or {}
        found += [d["entrypoint"] for d in doc.get("deployments", []) if "entrypoint" in d] if isinstance(doc, dict) else []
    return sorted(set(found))


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _local_helpers(flow: Flow, module: types.ModuleType) -> list[str]:
    """Globals a flow's body names that are plain functions or classes defined in the entrypoint file."""
    out = []
    for name in sorted(_global_names(flow.fn.__code__)):
        obj = module.__dict__.get(name)
        if isinstance(obj, (Flow, Task)) or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            out.append(name)
    return out


def test_the_deployments_are_found():
    assert {"flows/alignment.py:alignment", "flows/fusion.py:fusion", "flows/stitch.py:stitch"} <= set(_entrypoints())


@pytest.mark.parametrize("entrypoint", _entrypoints())
def test_entrypoint_loads_as_prefect_loads_it_and_its_stage_flows_name_no_local_helper(entrypoint):
    flow = load_flow_from_entrypoint(entrypoint)
    path, name = entrypoint.split(":")
    assert isinstance(flow, Flow) and flow.fn.__name__ == name
    module = sys.modules[flow.fn.__module__]
    assert Path(module.__file__).resolve() == (ROOT / path).resolve()
    assert module.__name__ == Path(path).stem, "loaded as a top-level module, not from the flows package"
    # The entrypoint flow runs in the process that loaded it; its stage flows' task contexts go to Ray.
    stages = [f for f in vars(module).values() if isinstance(f, Flow) and f.fn.__module__ == module.__name__
              and f is not flow]
    offenders = {f.name: _local_helpers(f, module) for f in stages}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, (
        f"{path}: stage flows name helpers defined in the entrypoint file, which Ray workers cannot unpickle "
        f"(move them into a module of the flows package): {offenders}")


def test_the_check_finds_a_local_helper(tmp_path, monkeypatch):
    """The guard is not vacuous: the shape that broke match_in_batches is reported."""
    (tmp_path / "trap.py").write_text(
        "from prefect import flow\n\n"
        "def helper(x):\n    return x + 1\n\n"
        "@flow\ndef stage(x: int) -> int:\n    return helper(x)\n\n"
        "@flow\ndef trap(x: int) -> int:\n    return stage(x)\n")
    monkeypatch.chdir(tmp_path)
    flow = load_flow_from_entrypoint("trap.py:trap")
    module = sys.modules[flow.fn.__module__]
    assert _local_helpers(module.stage, module) == ["helper"]
