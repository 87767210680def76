"""Where the resolved parameters are shown: `rhapso align --explain`, resolved_params.json, the QC table."""

from __future__ import annotations

import json

from rhapso_cli.main import main
from rhapso_core.autoparams import resolve_parameters
from rhapso_core.autoparams.store import read_resolution_dict, write_resolution
from rhapso_core.config import PipelineParams
from rhapso_core.qc.parameters import parameters_section
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.write import write_dataset


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_explain_prints_values_and_reasons_and_writes_nothing(tmp_path, capsys):
    paths = write_dataset(tmp_path / "d", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(96, 96, 24), n_levels=2))
    before = _files(tmp_path)
    rc = main(["align", str(paths.xml), "--explain", "--set", "detection.dsxy=1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert _files(tmp_path) == before
    line = next(l for l in out.splitlines() if l.startswith("detection.dsxy"))
    assert "user" in line
    assert any(l.startswith("detection.threshold") and "auto" in l for l in out.splitlines())
    assert "prealignment:" in out
    rc = main(["align", str(paths.xml), "--explain", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert rc == 0 and {p["name"] for p in d["parameters"]} >= {"dsxy", "threshold", "max_epsilon"}


def test_resolution_json_round_trip_and_qc_table(tmp_path):
    paths = write_dataset(tmp_path / "d", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(96, 96, 24), n_levels=2))
    r = resolve_parameters(str(paths.xml), PipelineParams())
    uri = str(tmp_path / "out.rhapso" / "resolved_params.json")
    write_resolution(r, uri)
    d = read_resolution_dict(uri)
    assert d["parameters"] == json.loads(r.to_json())["parameters"]
    assert read_resolution_dict(str(tmp_path / "none.json")) is None
    html = parameters_section(d)
    assert html.count("<tr>") == len(r.values) + 1  # header + one row per parameter
    assert "detection.dsxy" in html and "Prealignment" in html
