"""QC report of a phase-correlation-only run: link section with correlations and residuals."""

from __future__ import annotations

import json
import re

from rhapso_core.pipeline.phase import phase_round
from rhapso_core.qc import build_report
from rhapso_core.synthetic.params import SyntheticParams
from rhapso_core.synthetic.write import write_dataset


def test_report_has_phase_links_section(tmp_path):
    ds = write_dataset(tmp_path / "ds", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(96, 64, 16), overlap=0.25,
                                                         jitter_voxels=(5.0, 5.0, 1.0), n_levels=1, seed=4))
    out = tmp_path / "phase.xml"
    rec = phase_round(str(ds.xml), str(out))
    assert rec.n_ok == 1
    # no interest points exist for a phase-only run: the store is absent
    res = build_report(str(ds.xml), str(out), str(tmp_path / "none.zarr"), "beads",
                       solver_report={"report": rec.solver_report}, ground_truth=str(ds.ground_truth),
                       phase_links=[k.to_dict() for k in rec.links])
    html = open(res["report_uri"]).read()
    assert '<section id="phase">' in html
    m = res["metrics"]["phase"]
    assert m["n_pairs"] == 1 and m["n_used"] == 1
    link = m["links"][0]
    assert link["r"] > 0.5
    assert link["residual"] < 0.05  # two views, one link: the solve reproduces it exactly
    data = json.loads(re.search(r'id="qc-metrics">(.*?)</script>', html, re.S).group(1))
    assert data["metrics"]["phase"]["n_used"] == 1
    assert res["metrics"]["truth"]["rms_voxels"] <= 0.5
    # the solver section sees the phase links: no view is unconstrained, nothing fails
    assert res["metrics"]["solver"]["unconnected_views"] == []
    assert [r["status"] for r in res["metrics"]["solver"]["links"]] == ["used"]
    assert res["verdict"] != "fail", res["reasons"]
