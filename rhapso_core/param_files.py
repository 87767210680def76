"""Parameter files and command-line overrides.

A parameter file is YAML, either nested by stage (``detection: {sigma: 1.8}``) or
flat in the seed's (Rhapso's) style (``sigma: 1.8`` at the top level). A flat key
goes to every stage whose parameters have a field of that name; a key no stage
knows is refused with its name and the file, so a typo never passes silently.
Rhapso's own files (per-round ``*_rigid`` / ``*_affine`` / ``*_split_affine`` keys,
input/output paths, evaluation settings) follow :mod:`rhapso_core.rhapso_keys`:
each key is mapped, or noted as not a parameter here with the reason, or refused.
``--set stage.name=value`` overrides are applied last; values are parsed as YAML
(``--set fusion.block_size=[128,128,64]``).
"""

from __future__ import annotations

import logging
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rhapso_core.rhapso_keys import rhapso_key

M = TypeVar("M", bound=BaseModel)

# Keys of Rhapso's parameter files that name inputs, outputs or cluster settings
# rather than algorithm parameters; this service takes those as arguments.
SEED_KEYS_NOT_PARAMETERS = frozenset(
    {
        "xml_file_path", "xml_file_path_detection", "xml_file_path_matching",
        "xml_file_path_solver", "xml_file_path_output", "xml_output_file_path",
        "image_file_prefix", "file_type", "output_path", "n5_output_file_prefix",
        "input_type", "run_type", "ray_cluster_config", "cluster_config",
    }
)


class ParameterError(ValueError):
    """A parameter file or override that cannot be used (message names the key)."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read parameter file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise ParameterError(f"{path}:{where} not valid YAML") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: a parameter file must be a mapping of names to values")
    return data


def _stage_fields(model_cls: type[BaseModel]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, field in model_cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = set(ann.model_fields)
    return out


def nest(
    data: Mapping[str, Any], model_cls: type[BaseModel], source: str = "parameters", notes: list[str] | None = None
) -> dict[str, Any]:
    """Route flat (seed-style) keys into their stages; keep nested stage sections.

    ``notes``, when given, receives one line per key that is not a parameter here
    (``"xml_file_path_detection: not used (an input/output location: ...)"``).
    """
    stages = _stage_fields(model_cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in stages:
            if not isinstance(value, Mapping):
                raise ParameterError(f"{source}: '{key}' must be a mapping of {key} parameters")
            out.setdefault(key, {}).update(value)
            continue
        if key in model_cls.model_fields:
            out[key] = value
            continue
        if key in SEED_KEYS_NOT_PARAMETERS:
            continue
        rule = rhapso_key(key, value)
        if rule is not None:
            if rule.action == "refuse":
                raise ParameterError(f"{source}: parameter '{key}': {rule.reason}")
            if rule.action == "ignore" and notes is not None:
                notes.append(f"{key}: not used ({rule.reason})")
            elif rule.action == "stage":
                stage, field = rule.target.split(".", 1)
                section = out.setdefault(stage, {})
                if field == "fixed_views" and section.get(field):
                    section[field] = section[field] + [v for v in rule.value if v not in section[field]]
                else:
                    section[field] = rule.value
            elif rule.action == "round":
                per_round = out.setdefault("alignment", {}).setdefault("matching_per_round", {})
                per_round.setdefault(rule.round, {})[rule.target] = value
            continue
        owners = [stage for stage, fields in stages.items() if key in fields]
        if not owners:
            known = set(stages) | set(model_cls.model_fields) | {f for fs in stages.values() for f in fs}
            raise ParameterError(f"{source}: unknown parameter '{key}'{_did_you_mean(key, known)}")
        for stage in owners:
            out.setdefault(stage, {}).setdefault(key, value)
    return out


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``stage.name=value`` strings to a nested parameter dict (a copy)."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        if "=" not in item:
            raise ParameterError(f"--set '{item}': expected stage.name=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ParameterError(f"--set '{item}': value is not valid YAML") from None
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParameterError(f"--set '{item}': '{part}' is not a parameter section")
        node[parts[-1]] = value
    return out


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _fields_at(model_cls: type[BaseModel], loc: tuple) -> set[str]:
    """The field names of the (nested) model that holds the parameter at ``loc``."""
    cls: type | None = model_cls
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part)) if cls is not None else None
        ann = field.annotation if field is not None else None
        cls = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return set(cls.model_fields) if cls is not None else set()


def build(model_cls: type[M], data: Mapping[str, Any], source: str = "parameters") -> M:
    """Validate into ``model_cls``; the error names the first bad parameter and why."""
    try:
        return model_cls.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":  # a typo: say so, and name the nearest real parameter
            hint = _did_you_mean(str(err["loc"][-1]), _fields_at(model_cls, tuple(err["loc"])))
            raise ParameterError(f"{source}: unknown parameter '{loc}'{hint}") from None
        value = err.get("input")
        shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
        if not loc:  # a rule across parameters (a model validator): its message names them
            raise ParameterError(f"{source}: {err['msg'].removeprefix('Value error, ')}") from None
        raise ParameterError(f"{source}: parameter '{loc}': {err['msg']}{shown}") from None


def load(
    model_cls: type[M], path: str | Path | None = None, overrides: Iterable[str] = ()
) -> M:
    """Defaults, then the file (nested or seed-style flat), then ``--set`` overrides."""
    data: dict[str, Any] = {}
    source = "parameters"
    if path is not None:
        source = str(path)
        notes: list[str] = []
        data = nest(read_yaml(path), model_cls, source, notes)
        for note in notes:  # Rhapso's files carry paths and cluster settings: say which keys were not used
            logging.getLogger(__name__).info("%s: %s", source, note)
    data = apply_overrides(data, overrides)
    overrides = list(overrides)
    if overrides:
        source = f"{path} (with --set)" if path is not None else "--set"
    return build(model_cls, data, source)
