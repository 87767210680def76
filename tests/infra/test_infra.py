"""Deployment and cluster files: valid for Prefect and for Ray's own checker."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_ray_cluster_config_passes_rays_checker():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "infra" / "ray-cluster-aws.yaml").read_text())
    validate_config(config)
    prepared = prepare_config(config)
    validate_config(prepared)
    assert set(prepared["available_node_types"]) == {"head", "cpu_worker"}
    # The checker is not a rubber stamp: a node type without resources is refused.
    broken = dict(config, available_node_types={"head": {"node_config": {}}})
    with pytest.raises(Exception, match="resources"):
        validate_config(broken)


def test_cluster_image_pins_the_drivers_ray():
    import ray

    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"ray[default]=={ray.__version__}"' in pyproject


def test_prefect_yaml_deployments_resolve():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {(d["entrypoint"].split(":")[1], d["name"]) for d in spec["deployments"]}
    for flow_name in ("alignment", "fusion", "stitch"):
        assert {(flow_name, "prod"), (flow_name, "dev")} <= names
    for d in spec["deployments"]:
        module, func = d["entrypoint"].split(":")
        mod = importlib.import_module(module.removesuffix(".py").replace("/", "."))
        flow_obj = getattr(mod, func)
        assert hasattr(flow_obj, "fn"), f"{d['entrypoint']} is not a Prefect flow"
        preset = d.get("parameters", {}).get("params_file")
        if preset:
            from flows.params import resolve

            resolve(params_file=preset)  # the preset validates


def test_acquired_event_trigger_targets_alignment():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    prod = [d for d in spec["deployments"] if d["entrypoint"].endswith(":alignment") and d["name"] == "prod"][0]
    trig = prod["triggers"][0]
    assert trig["expect"] == ["dataset.acquired"]
    assert trig["parameters"]["xml"] == "{{ event.payload.uri }}"
