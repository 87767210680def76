"""Phase-correlation tasks: correlate a batch of view pairs, solve the links of a round."""

from __future__ import annotations

from prefect import task

from rhapso_core.pipeline import phase
from rhapso_core.pipeline.overlap_affine_links import measure_overlap_affines
from rhapso_core.pipeline.pair_check import check_pairs_against_images
from rhapso_core.pipeline.phase_fallback import link_failed_pairs
from rhapso_core.pipeline import prealign
from rhapso_core.verify.params import VerifyParams
from rhapso_core.solver import SolverParams
from rhapso_core.stitching import PhaseLink, PhaseRoundRecord, StitchingParams
from rhapso_core.stitching.params import OverlapAffineParams
from tasks.policies import RETRY_DELAYS, retry_transient


@task(
    name="phase-correlate-pairs",
    task_run_name="phase-correlate-pairs-{batch_index}",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)
def correlate_pairs(xml_uri: str, pairs, params: StitchingParams, batch_index: int = 0) -> list[PhaseLink]:
    # Reads only the two overlap boxes of each pair; writes nothing, so a retry is harmless.
    return phase.stitch_pairs(xml_uri, pairs, params)


@task(name="solve-phase-links", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def solve_links(xml_uri: str, links: list[PhaseLink], out_xml: str, solver: SolverParams,
                params: StitchingParams) -> PhaseRoundRecord:
    return phase.solve_phase_round(xml_uri, links, out_xml, solver, params)


@task(name="verify-phase-round", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def verify_phase_round(xml_in: str, xml_out: str, verify: VerifyParams, grouping: list[str]) -> dict | None:
    # Rewrites xml_out only when a tile is reverted (atomically); a retry measures the same images again.
    return prealign.verify_phase_round(xml_in, xml_out, verify, grouping)


@task(name="phase-link-failed-pairs", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def link_failed(xml_uri: str, records: list, params: StitchingParams, min_relative_overlap: float,
                anchored: set) -> tuple[list, dict | None]:
    # Reads the failed pairs' overlaps only; writes nothing.
    return link_failed_pairs(xml_uri, records, params, min_relative_overlap, anchored)


@task(name="check-pairs-against-images", retries=3, retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=retry_transient)
def check_pairs(xml_uri: str, store_uri: str, records: list, label: str, params: StitchingParams,
                reach: float | None, min_matches: int = SolverParams.model_fields["min_matches"].default) -> tuple[list, dict | None, list]:
    # Reads the matched pairs' overlaps; drops (rewrites as empty) only the correspondences of pairs whose
    # points disagree with the images, so a retry after a partial run finds those pairs without matches and
    # leaves them as they are.
    return check_pairs_against_images(xml_uri, store_uri, records, label, params, reach, min_matches=min_matches)


@task(name="fit-overlap-affines", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def fit_overlap_affines(xml_uri: str, store_uri: str, records: list, label: str, params: OverlapAffineParams,
                        min_matches: int, held: dict | None = None) -> tuple[dict | None, list]:
    # Reads the pairs' overlaps and stored points; writes nothing (the fits travel to the solve).
    return measure_overlap_affines(xml_uri, store_uri, records, label, params, min_matches, held=held)
