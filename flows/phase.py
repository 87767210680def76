"""The phase-correlation round of the alignment flow: pairs in batches, then one solve.

A module of the ``flows`` package (not ``flows/alignment.py``) so Ray workers can import what
the stage flow names (see :mod:`flows.batched_matching`).
"""

from __future__ import annotations

from prefect import get_run_logger
from flows.lean_flow import flow

from flows import artifacts
from rhapso_core.pipeline.results import RoundResult
from rhapso_core.solver import SolverParams
from rhapso_core.stitching import StitchingParams
from rhapso_core.verify.params import VerifyParams
from tasks import matching as matching_tasks
from tasks import stitching as stitching_tasks


def links_table(links: list, round_name: str) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [{"view a": f"{k.view_a[0]}/{k.view_a[1]}", "view b": f"{k.view_b[0]}/{k.view_b[1]}",
             "shift x": round(k.shift_xyz[0], 3), "shift y": round(k.shift_xyz[1], 3),
             "shift z": round(k.shift_xyz[2], 3), "r": None if k.r != k.r else round(k.r, 4),
             "level": k.level, "status": k.status} for k in links]
    create_table_artifact(rows, key=artifacts._key(f"phase-links-{round_name}"),
                          description=f"Phase-correlation links ({round_name} round)")


@flow(name="phase-correlation", flow_run_name="phase-correlation-{round_name}", log_prints=True)
def phase_stage(
    xml: str, params: StitchingParams, solver: SolverParams, out_xml: str, round_name: str = "phase",
    pair_mode: str = "overlapping", group_by: list[str] | None = None, slots: int = 1,
    verify: VerifyParams | None = None, grouping: list[str] | None = None,
) -> RoundResult:
    """Correlate the overlapping view pairs in a few batches per worker slot, solve, write ``out_xml``;
    with ``verify``, check the result against ``xml`` overlap by overlap (tiles made worse go back)."""
    logger = get_run_logger()
    pairs = matching_tasks.plan_pairs(xml, pair_mode, list(group_by or []))
    batches = matching_tasks.batch_pairs(list(pairs), slots)
    futures = [stitching_tasks.correlate_pairs.submit(xml, b, params, i) for i, b in enumerate(batches)]
    links = matching_tasks.unbatch(artifacts.wait_with_progress(futures, f"pair batches correlated ({round_name})"),
                                   len(pairs))
    ok = sum(k.ok for k in links)
    logger.info("%s round: %d of %d pairs gave a link (r >= %s)", round_name, ok, len(links), params.min_r)
    n_views = len({v for k in links for v in (k.view_a, k.view_b)})
    if ok < n_views - 1:
        logger.warning("%s round: %d links for %d views: some views keep their registrations (see the "
                       "phase-correlation table: low r means the overlaps do not look alike)", round_name, ok, n_views)
    links_table(links, round_name)
    rec = stitching_tasks.solve_links(xml, links, out_xml, solver, params)
    result = {"transform_name": rec.transform_name, "report": rec.solver_report, "n_links": ok}
    artifacts.solver_table(result, round_name)
    check = None
    if verify is not None and verify.enabled:
        check = stitching_tasks.verify_phase_round(xml, out_xml, verify, list(grouping or ["channel", "illumination"]))
        (logger.warning if check["worse_than_input"] else logger.info)("%s round: %s", round_name, check["summary"])
    return RoundResult("phase", out_xml, len(links), ok, rec.solver_report.get("final_error"), rec.transform_name,
                       result, verify=check, phase_links=[k.to_dict() for k in rec.links])
