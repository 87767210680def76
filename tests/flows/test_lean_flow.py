"""The project's flows build their parameter schema when it is read (flows/lean_flow.py), and
read it is the schema Prefect builds (what deployments register and the UI's form shows)."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
from prefect import Flow
from prefect import flow as prefect_flow
from prefect.utilities.callables import parameter_schema

import flows.alignment
import flows.discovery
import flows.fusion
import flows.phase
import flows.stitch
from flows import lean_flow
from rhapso_core.config import PipelineParams

MODULES = (flows.alignment, flows.discovery, flows.fusion, flows.phase, flows.stitch)


def _project_flows() -> list[Flow]:
    return [f for m in MODULES for f in vars(m).values() if isinstance(f, Flow) and f.fn.__module__ == m.__name__]


def test_the_hook_is_in_place():
    assert lean_flow._HOOKED, "Prefect's Flow constructor no longer calls prefect.flows.parameter_schema"


@pytest.mark.parametrize("f", _project_flows(), ids=lambda f: f.name)
def test_a_flow_builds_its_schema_when_read_and_it_is_prefects(f):
    assert isinstance(f, lean_flow.LeanFlow)
    fresh = lean_flow.LeanFlow(f.fn, name=f.name)
    assert "parameters" not in fresh.__dict__  # not built at definition
    assert fresh.parameters == Flow(f.fn, name=f.name).parameters == parameter_schema(f)
    assert "parameters" in fresh.__dict__  # built once


def test_the_pipeline_flows_schema_is_the_nested_model():
    schema = flows.fusion.fusion.parameters.model_dump()
    assert list(schema["properties"]) == ["xml", "out", "params", "params_file", "overrides", "overwrite", "views"]
    assert schema["required"] == ["xml", "out"]
    assert "PipelineParams" in schema["definitions"]
    assert set(PipelineParams.model_fields) <= set(schema["definitions"]["PipelineParams"]["properties"])


def test_with_options_keeps_the_options_and_the_lazy_schema():
    stage = flows.fusion.fusion_stage
    copy = stage.with_options(name="fuse-copy", retries=2)
    assert isinstance(copy, lean_flow.LeanFlow) and copy is not stage
    assert (copy.name, copy.retries, copy.fn, copy.log_prints) == ("fuse-copy", 2, stage.fn, stage.log_prints)
    assert "parameters" not in copy.__dict__
    assert copy.parameters == parameter_schema(stage.fn)
    # Ray workers receive flows pickled (the task's context)
    back = cloudpickle.loads(cloudpickle.dumps(copy))
    assert isinstance(back, lean_flow.LeanFlow) and back.parameters == copy.parameters


def test_other_flows_are_unchanged():
    def add(x: int, y: int = 2) -> int:
        return x + y

    plain = prefect_flow(add)
    assert type(plain) is Flow
    assert "parameters" in plain.__dict__ and plain.parameters == parameter_schema(add)
    assert plain.parameters.required == ["x"]


def test_a_deployment_gets_the_full_schema():
    deployment = flows.fusion.fusion.to_deployment(name="schema-check")
    assert deployment._parameter_openapi_schema == parameter_schema(flows.fusion.fusion.fn)
    assert "PipelineParams" in deployment._parameter_openapi_schema.model_dump()["definitions"]


def _run_parameters() -> list[dict]:
    from rhapso_core.pipeline.view_selection import ViewSelection

    p = PipelineParams.model_validate({"fusion": {"block_size": [64, 128, 128], "overlap_strategy": "max"},
                                       "views": {"channels": [0], "tiles": [1, 2]},
                                       "runtime": {"use_ray": False, "num_cpus": 2}})
    return [
        {"xml": "s3://bucket/dataset.xml", "out": "/data/fused.ome.zarr", "params": p, "params_file": None,
         "overrides": ["fusion.overlap_strategy=avg_blend", "solver.max_iterations=5"], "overwrite": True, "views": None},
        {"xml": "a.xml", "out": "b", "params": p.fusion, "overwrite": False, "selection": ViewSelection(tiles=[3])},
        {"xml": "a.xml", "round_name": "rigid", "ids": (1, 2, 3), "scale": 0.5, "model": p.solver},
        {"params": PipelineParams()},
    ]


@pytest.mark.parametrize("parameters", _run_parameters(), ids=lambda p: ",".join(p))
def test_a_run_stores_the_parameters_prefect_would_without_importing_fastapi(parameters, monkeypatch):
    f = flows.fusion.fusion
    expected = Flow.serialize_parameters(f, parameters)  # Prefect's, through FastAPI
    monkeypatch.setitem(sys.modules, "fastapi.encoders", None)  # importing it now raises
    assert f.serialize_parameters(parameters) == expected


def test_other_values_still_go_to_prefects_encoder():
    import datetime
    from pathlib import PurePosixPath

    values = {"when": datetime.date(2026, 12, 6), "path": PurePosixPath("/a/b"), "ids": {1, 2},
              "nested": [["a"], {"k": 1}], "odd": object()}
    f = flows.fusion.fusion
    out = f.serialize_parameters(values)
    assert out == Flow.serialize_parameters(f, values)
    assert out["when"] == "2026-12-06" and out["path"] == "/a/b" and out["odd"] == "<object>"
