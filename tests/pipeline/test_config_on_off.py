"""A bare on / off (YAML 1.1 booleans) in a parameter file or --set means the switch's value."""

from __future__ import annotations

import pytest
import yaml

from rhapso_core.config import PipelineParams
from rhapso_core.param_files import apply_overrides


@pytest.mark.parametrize("raw, want", [("off", "off"), ("on", "on"), ("auto", "auto")])
def test_prealign_on_off(raw, want):
    assert PipelineParams.model_validate(apply_overrides({}, [f"alignment.prealign={raw}"])).alignment.prealign == want
    data = yaml.safe_load(f"alignment:\n  prealign: {raw}\n")
    assert PipelineParams.model_validate(data).alignment.prealign == want


def test_other_values_are_still_refused():
    with pytest.raises(ValueError, match="prealign"):
        PipelineParams.model_validate({"alignment": {"prealign": "sometimes"}})


def test_flatfield_off_from_yaml():
    assert PipelineParams.model_validate(yaml.safe_load("alignment:\n  flatfield: off\n")).alignment.flatfield == "off"
    est = ["alignment.flatfield=estimate", "intensity.dark_level=100"]
    assert PipelineParams.model_validate(apply_overrides({}, est)).alignment.flatfield == "estimate"
    with pytest.raises(ValueError, match="needs intensity.dark_level"):
        PipelineParams.model_validate(apply_overrides({}, est[:1]))
    with pytest.raises(ValueError, match="flatfield"):
        PipelineParams.model_validate({"alignment": {"flatfield": "on"}})
