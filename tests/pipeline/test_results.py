"""The typed stage results write the JSON the flows have always returned (keys and their order).

The summaries the CLI writes and the QC report read these forms; a field renamed in a record
must not change them. Exact comparison (no tolerance).
"""

from __future__ import annotations

import json
import math

import numpy as np

from rhapso_core.pipeline.match import PairRecord
from rhapso_core.pipeline.results import AlignmentSummary, FusionSummary, RoundResult, SolveOutcome
from rhapso_core.solver.records import SolveReport, SolveResult


def _outcome(final_error=0.25, verify=None) -> SolveOutcome:
    rep = SolveReport("rigid", 0.1, "one_round", "iterative", [(0, 0)], [(0, 0)], {(0, 1): final_error}, [], [],
                      12, 1, final_error, final_error, True)
    return SolveOutcome(SolveResult({(0, 0): np.eye(4), (0, 1): np.eye(4)}, "Rigid", rep), 3,
                        {"beads": 3}, 2, verify)


def _record(status="ok") -> PairRecord:
    return PairRecord((0, 0), (0, 1), "beads", 10, 11, 9, 8, 0.5, status, "", None)


def test_solve_outcome_json_is_the_solver_result_plus_counts():
    o = _outcome(verify={"reverted": []})
    d = o.to_dict()
    assert list(d) == ["transform_name", "corrections", "report", "n_links", "n_links_by_label", "n_groups", "verify"]
    assert d["report"] == o.result.report.to_dict() and d["n_links_by_label"] == {"beads": 3}
    assert "verify" not in _outcome().to_dict()
    assert o.final_error == 0.25 and _outcome(math.inf).final_error is None  # as the JSON's null
    json.dumps(d)


def test_round_json_per_kind():
    o = _outcome()
    points = RoundResult("points", "r.xml", 1, 1, o.final_error, o.transform_name, o.to_dict(),
                         verify={"reverted": [{"name": "t0 s1"}]}, pair_records=[_record()])
    assert list(points.to_dict()) == ["verify", "xml", "pairs", "pairs_matched", "final_error", "transform",
                                      "pair_records", "image_checks", "overlap_affines", "solver_report"]
    assert points.to_dict()["pair_records"] == [_record().to_dict()]
    phase = RoundResult("phase", "p.xml", 1, 1, 0.1, "Phase", {"n_links": 1}, phase_links=[{"view_a": [0, 0]}])
    assert list(phase.to_dict()) == ["verify", "xml", "pairs", "pairs_matched", "final_error", "transform",
                                     "pair_records", "phase_links", "solver_report"]
    split = RoundResult("split", "s.xml", 1, 0, None, "Affine", o.to_dict(), split_xml="split.xml", store="st",
                        labels=["beads", "fake"])
    assert list(split.to_dict()) == ["xml", "split_xml", "store", "labels", "pairs", "pairs_matched",
                                     "final_error", "transform", "pair_records", "solver_report"]
    s = AlignmentSummary("in.xml", "out.xml", "st", {}, "resolved.json", False, {"0/0": 5}, [phase, points])
    d = s.to_dict()
    assert list(d) == ["input", "output", "store", "resolved_parameters", "resolved_params_json", "prealignment",
                       "detection", "rounds", "reverted_tiles"]
    assert d["reverted_tiles"] == {"r.xml": ["t0 s1"]} and s.last_round is points
    s.detection, s.qc = None, {"verdict": "pass"}
    assert "detection" not in s.to_dict() and s.to_dict()["qc"] == {"verdict": "pass"}
    json.dumps(d)


def test_fusion_summary_json():
    f = FusionSummary("f.ome.zarr", "f.xml", [4, 5, 6], 3, 2, ["1"], [0], [0, 1])
    assert list(f.to_dict()) == ["output", "xml", "shape_zyx", "blocks_written", "units", "levels_added",
                                 "timepoints", "channels"]
    f.intensity = {"xml": "i.xml"}
    assert f.to_dict()["intensity"] == {"xml": "i.xml"}
    json.dumps(f.to_dict())
