"""The project's flows build their parameter schema when it is read (flows/lazy_schema.py), and
read it is the schema Prefect builds (what deployments register and the UI's form shows)."""

from __future__ import annotations

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
from flows import lazy_schema
from rhapso_core.config import PipelineParams

MODULES = (flows.alignment, flows.discovery, flows.fusion, flows.phase, flows.stitch)


def _project_flows() -> list[Flow]:
    return [f for m in MODULES for f in vars(m).values() if isinstance(f, Flow) and f.fn.__module__ == m.__name__]


def test_the_hook_is_in_place():
    assert lazy_schema._HOOKED, "Prefect's Flow constructor no longer calls prefect.flows.parameter_schema"


@pytest.mark.parametrize("f", _project_flows(), ids=lambda f: f.name)
def test_a_flow_builds_its_schema_when_read_and_it_is_prefects(f):
    assert isinstance(f, lazy_schema.LazySchemaFlow)
    fresh = lazy_schema.LazySchemaFlow(f.fn, name=f.name)
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
    assert isinstance(copy, lazy_schema.LazySchemaFlow) and copy is not stage
    assert (copy.name, copy.retries, copy.fn, copy.log_prints) == ("fuse-copy", 2, stage.fn, stage.log_prints)
    assert "parameters" not in copy.__dict__
    assert copy.parameters == parameter_schema(stage.fn)
    # Ray workers receive flows pickled (the task's context)
    back = cloudpickle.loads(cloudpickle.dumps(copy))
    assert isinstance(back, lazy_schema.LazySchemaFlow) and back.parameters == copy.parameters


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
