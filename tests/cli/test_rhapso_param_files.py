"""Rhapso's published parameter files (tests/fixtures/rhapso_params, MIT, see SOURCE.txt) load:
every key is mapped to a parameter, noted as not a parameter here (with a reason), or refused
(with its name and a reason); per-round matching keys reach the rounds that use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rhapso_core import param_files
from rhapso_core.config import PipelineParams
from rhapso_core.rhapso_keys import PER_ROUND_FIELDS, ROUND_SUFFIXES, rhapso_key

FILES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "rhapso_params").glob("*.yml"))


def _load(path: Path):
    notes: list[str] = []
    data = param_files.nest(param_files.read_yaml(path), PipelineParams, str(path), notes)
    return param_files.build(PipelineParams, data, str(path)), notes


def test_all_published_files_are_present():
    assert len(FILES) == 7, [f.name for f in FILES]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_key_is_accounted_for(path):
    raw = yaml.safe_load(path.read_text())
    p, notes = _load(path)
    noted = {n.split(":", 1)[0] for n in notes}
    assert all("not used (" in n and n.rstrip().endswith(")") for n in notes), notes
    stage_fields = {name: set(type(getattr(p, name)).model_fields) for name in type(p).model_fields}
    for key, value in raw.items():
        rule = rhapso_key(key, value)
        if key in noted or key in param_files.SEED_KEYS_NOT_PARAMETERS:
            continue
        if rule is not None:
            assert rule.action in ("stage", "round", "check"), (key, rule)
            continue
        owners = [s for s, f in stage_fields.items() if key in f]
        assert owners, f"{path.name}: key {key!r} reached no parameter"
        for s in owners:  # a plainly routed key keeps its value (Rhapso's names are ours)
            got = getattr(getattr(p, s), key)
            want = tuple(value) if isinstance(got, tuple) else value
            assert got == want, (key, s, got, value)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_per_round_matching_keys_reach_their_rounds(path):
    raw = yaml.safe_load(path.read_text())
    p, _ = _load(path)
    rounds = {"rigid": p.round_params("rigid")[0], "affine": p.round_params("affine")[0],
              "split_affine": p.round_params("affine", round_name="split_affine")[0]}
    checked = 0
    for key, value in raw.items():
        for suffix, rnd in ROUND_SUFFIXES:
            base = key[: -len(suffix)] if key.endswith(suffix) else None
            if base in PER_ROUND_FIELDS:
                field = PER_ROUND_FIELDS[base]
                got = getattr(rounds[rnd], field)
                if field == "lambda_value" and rnd == "rigid":
                    assert got == 0.0  # rigid rounds are not regularised (Rhapso fits rigid directly)
                else:
                    assert got == value, (key, field, got, value)
                checked += 1
                break
    assert checked >= 20  # both rounds' ten keys, at least
    # The rounds really differ where the file says so (Rhapso: radius 300 rigid, 100 affine).
    assert rounds["rigid"].search_radius == raw["search_radius_rigid"] != rounds["affine"].search_radius
    assert rounds["rigid"].max_epsilon == raw["inlier_factor_rigid"] and rounds["affine"].max_epsilon == raw["inlier_factor_affine"]
    assert (rounds["rigid"].model, rounds["affine"].model) == ("rigid", "affine")


def test_special_keys_map_and_bad_values_are_refused_by_name(tmp_path):
    f = tmp_path / "r.yml"
    f.write_text("fixed_views: ['timepoint: 0, setup: 2']\nfixed_tile: 'timepoint: 0, setup: 5'\n"
                 "chunks_per_bound: 0\nsearch_radius_affine: 42\n")
    p, _ = _load(f)
    assert p.solver.fixed_views == [(0, 2), (0, 5)]
    assert p.detection.chunks_per_bound == 1  # Rhapso's 0 = no sub-chunking
    assert p.round_params("affine")[0].search_radius == 42 and p.round_params("rigid")[0].search_radius == "auto"
    for text, name, fragment in [
        ("match_type_rigid: 'affine'\n", "match_type_rigid", "alignment.rounds"),
        ("fixed_views: ['tile 3']\n", "fixed_views", "timepoint: 0, setup: 0"),
        ("search_radius_rigid: -5\n", "matching_per_round", "rigid.search_radius"),
        ("significanse_rigid: 3\n", "significanse_rigid", "unknown parameter"),
    ]:
        f.write_text(text)
        with pytest.raises(param_files.ParameterError) as e:
            _load(f)
        msg = str(e.value)
        assert name in msg and fragment in msg and "\n" not in msg and "r.yml" in msg, msg


def test_nested_per_round_section_and_split_affine_round():
    p = PipelineParams.model_validate(
        {"matching": {"max_epsilon": 7.0},
         "alignment": {"matching_per_round": {"split_affine": {"max_epsilon": 2.5, "model_min_matches": 30}}}}
    )
    m, s = p.round_params("affine", round_name="split_affine")
    # solver.model defaults to auto: validation picks a model no more flexible than the round's kind.
    assert (m.max_epsilon, m.model_min_matches, m.model, s.model, s.max_model) == (2.5, 30, "affine", "auto", "affine")
    assert p.round_params("affine")[0].max_epsilon == 7.0
