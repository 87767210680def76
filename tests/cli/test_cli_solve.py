"""``rhapso solve`` prints the solve's JSON report (:meth:`SolveOutcome.to_dict`), as before the
stage results were typed: the same keys, and the counts of the solve it ran. Exact comparison."""

from __future__ import annotations

import json

from rhapso_cli.main import main


def test_solve_prints_the_json_report(tmp_path, capsys):
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline import detect, match
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    paths = write_dataset(tmp_path / "data", SyntheticParams(
        grid=(2, 1, 1), tile_size_xyz=(96, 96, 24), overlap=0.3, blob_density=1500.0, n_levels=1,
        chunk_size_xyz=(48, 48, 24)))
    xml, store = str(paths.xml), str(tmp_path / "ip.zarr")
    p = PipelineParams()
    for plan in detect.plan_views(xml, p.detection):
        detect.store_view(store, plan, detect.merge_view(plan, [detect.run_chunk(xml, plan.view, t, plan.params)
                                                                for t in plan.tasks]))
    records = [match.match_pair(xml, store, a, b, "beads", p.round_params("rigid")[0]) for a, b in match.plan_pairs(xml)]
    assert records and all(r.ok for r in records), [r.reason for r in records]
    capsys.readouterr()

    assert main(["solve", xml, "--store", store, "--out", str(tmp_path / "solved.xml"), "--model", "rigid"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["transform_name", "corrections", "report", "n_links", "n_links_by_label", "n_groups",
                            "verify"]
    assert report["n_links"] == len(records) and report["n_links_by_label"] == {"beads": len(records)}
    assert report["n_groups"] == 2 and len(report["corrections"]) == 2
