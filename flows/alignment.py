"""Alignment: detect -> (match + solve) per round (rigid, then affine by default)."""

from __future__ import annotations


from prefect import get_run_logger
from flows.lean_flow import flow
from prefect.exceptions import UnfinishedRun
from prefect_ray.context import remote_options

from flows import artifacts
from flows.batched_matching import match_in_batches
from flows.layout import (
    alignment_layout,
    alignment_outputs,
    check_not_input,
    clear_dead_run_temporaries,
    default_aligned_xml,
    guard_outputs,
)
from flows.params import resolve
from flows.phase import phase_stage
from rhapso_core.pipeline.overlap_affine_links import (
    merged_records, phase_held, round_fits_affines, unfitted_pairs, with_fit_steps,
)
from rhapso_core.pipeline.phase_fallback import anchored_pairs, anchors_of_unmatched, face_pairs
from rhapso_core.pipeline.prealign import alignment_rounds, kept_links
from rhapso_core.pipeline.publish import publish, staged_name
from flows.qc_failure import raise_if_qc_failed
from flows.runtime import choose_runtime, current_run_id, ray_session, stage_runner, worker_slots
from rhapso_core.config import AlignmentParams, PipelineParams
from rhapso_core.pipeline.view_selection import ViewSelection
from rhapso_core.detection import DetectionParams
from rhapso_core.io import fs_for
from rhapso_core.matching import MatchingParams
from rhapso_core.pipeline.dataset import xml_digest
from rhapso_core.output_layout import split_outputs
from rhapso_core.pipeline.run_lock import output_lock
from rhapso_core.pointstore import PointStore, export_n5
from rhapso_core.solver import SolverParams
from rhapso_core.split import SplitParams
from rhapso_core.stitching import StitchingParams
from rhapso_core.pipeline.results import AlignmentSummary, RoundResult
from rhapso_core.pipeline.retry import RetryParams
from rhapso_core.verify import VerifyParams
from tasks import autoparams as autoparams_tasks
from tasks import detection as detection_tasks
from tasks import intensity as intensity_tasks
from tasks import matching as matching_tasks
from tasks import qc as qc_tasks
from tasks import split as split_tasks
from tasks import stitching as stitching_tasks
from tasks import solving as solving_tasks
from tasks.policies import ray_hints


@flow(name="detection", log_prints=True)
def detection_stage(xml: str, store: str, params: DetectionParams, selection: ViewSelection | None = None) -> dict:
    """One task per chunk of every selected view (of ``params.channels``); one merge-and-store task per view."""
    sha = xml_digest(xml)
    plans = detection_tasks.plan_views(xml, sha, params, selection)
    views, chunk_futures = [], []
    for plan in plans:
        parts = []
        for chunk in plan.tasks:
            with remote_options(**ray_hints(detection_tasks.chunk_memory_bytes(chunk, plan.params))):
                parts.append(detection_tasks.run_chunk.submit(xml, sha, plan.view, chunk, plan.params))
        chunk_futures += parts
        views.append((plan, parts))
    # The stores after every chunk: a thread pool starts tasks in the order they were submitted,
    # and a store waits for its view's chunks in a worker of its own. Submitted after each view
    # (as before), the stores held one of two workers while they waited, so the views were
    # detected one after another.
    stored = [(plan.view, detection_tasks.store_points.submit(store, plan, parts)) for plan, parts in views]
    try:
        results = artifacts.wait_with_progress([fut for _, fut in stored], "views detected")
    except UnfinishedRun:
        # A store task never ran because a chunk failed: raise that chunk's own error.
        for f in chunk_futures:
            f.result()
        raise
    counts = {view: n for (view, _), n in zip(stored, results)}
    artifacts.points_table(counts, params.label)
    return {f"{v[0]}/{v[1]}": n for v, n in counts.items()}


@flow(name="match-and-solve", flow_run_name="match-and-solve-{round_name}", log_prints=True)
def match_and_solve_stage(
    xml: str, store: str, label: str, matching: MatchingParams, solver: SolverParams,
    out_xml: str, round_name: str, pair_mode: str = "overlapping", group_by: list[str] | None = None,
    slots: int = 1, phase_anchors: dict | None = None, verify: VerifyParams | None = None,
    detection: DetectionParams | None = None, pair_retry: RetryParams | None = None,
    alignment: AlignmentParams | None = None, selection: ViewSelection | None = None,
    channels: list[int] | None = None, stitching: StitchingParams | None = None,
) -> RoundResult:
    """The view pairs matched in a few batches per worker slot, then the global solve writing ``out_xml``
    (checked against ``xml`` overlap by overlap unless ``verify.enabled`` is false).

    ``alignment`` says which views are solved together (grouping) and how timepoints are
    registered; ``selection`` which views take part; ``channels`` which channels have points.
    """
    logger = get_run_logger()
    pairs = matching_tasks.plan_pairs(xml, pair_mode, list(group_by or []), alignment, selection, channels)
    records = match_in_batches(xml, store, pairs, label, matching, slots, f"pair batches matched ({round_name})")
    pair_retry = pair_retry or RetryParams()
    round_anchors = [phase_anchors] if phase_anchors else []
    if pair_retry.enabled and not all(r.ok for r in records):
        held = anchored_pairs(phase_anchors)  # a phase link holds them already: no retries
        free = [r for r in records if frozenset((tuple(r.view_a), tuple(r.view_b))) not in held]
        retried = {(tuple(r.view_a), tuple(r.view_b)): r for r in matching_tasks.retry_failed(
            xml, store, free, label, matching, detection or DetectionParams(label=label), pair_retry)}
        records = [retried.get((tuple(r.view_a), tuple(r.view_b)), r) for r in records]
        if pair_retry.phase_link:
            records, extra = stitching_tasks.link_failed(xml, records, stitching or StitchingParams(),
                                                         pair_retry.min_relative_overlap, held)
            round_anchors += [extra] if extra else []
    overlap_affines: list = []
    fitted = None
    oa_params = (stitching or StitchingParams()).overlap_affine
    if round_fits_affines(solver, oa_params):
        by_phase = (phase_held(round_anchors, face_pairs(xml, records, pair_retry.min_relative_overlap))
                    if oa_params.phase_held_pairs else None)
        fitted, overlap_affines = stitching_tasks.fit_overlap_affines(xml, store, records, label, oa_params,
                                                                      solver.min_matches, by_phase)
        records = with_fit_steps(records, overlap_affines)
        logger.info("%s round: %d of %d pairs' overlap affines used in place of their points or phase links",
                    round_name, sum(e["status"] == "used" for e in overlap_affines), len(overlap_affines))
    image_checks: list = []
    if pair_retry.image_check:
        rest, replaced, image_checks = stitching_tasks.check_pairs(
            xml, store, unfitted_pairs(records, fitted), label, stitching or StitchingParams(),
            None if isinstance(matching.max_epsilon, str) else float(matching.max_epsilon), solver.min_matches)
        records = merged_records(records, rest)
        round_anchors += [replaced] if replaced else []
        held = sum(r.status == "image_link" for r in records)
        if held:
            logger.info("%s round: %d pair(s) whose points disagree with the images are held by phase links",
                        round_name, held)
    if phase_anchors:  # the phase round's links hold only the pairs points did not match
        faces = face_pairs(xml, records, pair_retry.min_relative_overlap)
        round_anchors = [a for a in [anchors_of_unmatched(phase_anchors, records, faces)] + round_anchors[1:] if a]
    round_anchors += [fitted] if fitted else []
    ok = sum(r.ok for r in records)
    logger.info("%s round: %d of %d pairs matched", round_name, ok, len(records))
    n_views = len({v for r in records for v in (r.view_a, r.view_b)})
    if ok < n_views - 1:
        failed: dict[str, int] = {}
        for r in records:
            if not r.ok:
                failed[r.status] = failed.get(r.status, 0) + 1
        example = next((r.reason for r in records if not r.ok and r.reason), "")
        logger.warning(
            "%s round: only %d pairs matched for %d views, some views cannot be placed by matches: %s%s",
            round_name, ok, n_views, ", ".join(f"{n} {k}" for k, n in failed.items()),
            f" (e.g. {example})" if example else "")
    artifacts.pairs_table(records, round_name)
    outcome = solving_tasks.solve_round(xml, store, label, solver, out_xml, verify or VerifyParams(), round_anchors,
                                        alignment, selection)
    report = outcome.to_dict()
    artifacts.solver_table(report, round_name)
    check = outcome.verify
    if check:
        (logger.warning if check["worse_than_input"] else logger.info)("%s round: %s", round_name, check["summary"])
    return RoundResult("points", out_xml, len(records), ok, outcome.final_error, outcome.transform_name, report,
                       verify=check, pair_records=records, image_checks=image_checks,
                       overlap_affines=overlap_affines)


@flow(name="split-affine", log_prints=True)
def split_affine_stage(
    xml: str, store: str, label: str, split: SplitParams, matching: MatchingParams, solver: SolverParams,
    out_xml: str, work: str, slots: int = 1,
) -> RoundResult:
    """Split views into sub-views, match sub-views of different tiles, solve real + fake matches."""
    logger = get_run_logger()
    split_xml, split_store = split_outputs(work)
    res = split_tasks.split(xml, split_xml, split, store, split_store)
    parent = res.parent_of
    pairs = [(a, b) for a, b in matching_tasks.plan_pairs(split_xml, "overlapping", [])
             if parent[a[1]] != parent[b[1]]]  # pieces of one tile are tied by the fake matches
    records = match_in_batches(split_xml, split_store, pairs, label, matching, slots,
                               "pair batches matched (split-affine)")
    ok = sum(r.ok for r in records)
    logger.info("split-affine: %d sub-views, %d of %d pairs matched, %d fake points",
                len(parent), ok, len(records), res.fake_points)
    artifacts.pairs_table(records, "split-affine")
    weights = {**solver.label_weights, **res.label_weights}
    solver = solver.model_copy(update={"model": "affine", "label_weights": weights})
    outcome = split_tasks.solve_split(split_xml, split_store, [label, split.fake_label], solver, out_xml)
    report = outcome.to_dict()
    artifacts.solver_table(report, "split-affine")
    return RoundResult("split", out_xml, len(records), ok, outcome.final_error, outcome.transform_name, report,
                       pair_records=records, split_xml=split_xml, store=split_store,
                       labels=[label, split.fake_label])


def run_alignment(xml: str, out: str, p: PipelineParams, qc: bool = True, ground_truth: str | None = None,
                  final_xml: str | None = None) -> AlignmentSummary:
    """The alignment stages in order (inside a flow run and a Ray session).

    The last round's XML goes to ``final_xml`` when given (a staged name beside
    ``out``, published by the caller once the run's other results are complete),
    else to ``out``; everything else is laid out from ``out``.
    """
    check_not_input(out, xml, "output XML")
    final = final_xml or out
    layout = alignment_layout(out)
    runner = stage_runner(p.runtime)
    label = p.detection.label
    if p.alignment.flatfield == "estimate":
        # Every later read, the resolution's included, goes through the estimated flat field.
        xml = intensity_tasks.flatfield_input(xml, p.intensity, layout["flatfield"])
    # Every `auto` parameter is derived from this dataset once, before any stage runs.
    resolution = autoparams_tasks.resolve_parameters(xml, p, layout["resolved_params"])
    p = resolution.params
    summary = AlignmentSummary(xml, final, layout["store"], resolution.summary(), layout["resolved_params"],
                               resolution.prealignment.chosen)
    artifacts.resolved_table(resolution)
    # Phase rounds read pixels, not points: a run of phase rounds only detects nothing.
    points_needed = p.alignment.split_affine or any(k != "phase" for k in p.alignment.rounds)
    if points_needed:
        summary.detection = detection_stage.with_options(task_runner=runner)(
            xml, layout["store"], p.detection, p.views)
    current = xml
    rounds = summary.rounds
    anchors = None  # the last phase round's links, kept by later point rounds (stitching.keep_links)
    kinds = alignment_rounds(p, resolution.prealignment)
    n_rounds = len(kinds) + (1 if p.alignment.split_affine else 0)
    for i, kind in enumerate(kinds, start=1):
        target = final if i == n_rounds else layout["round_xml"].format(index=i, kind=kind)
        fs, path = fs_for(target)
        fs.makedirs(fs._parent(path), exist_ok=True)
        if kind == "phase":
            rounds.append(phase_stage.with_options(task_runner=stage_runner(p.runtime))(
                current, p.stitching, p.solver, target, f"phase-{i}", p.alignment.pair_mode,
                list(p.alignment.group_by), worker_slots(p.runtime), p.verify, list(p.alignment.grouping)))
            if p.stitching.keep_links:
                anchors = {"xml": current, "links": kept_links(rounds[-1].phase_links,
                                                                rounds[-1].solver_report.get("report"),
                                                                rounds[-1].verify)}
            current = target
            continue
        m, s = p.round_params(kind)
        rounds.append(
            match_and_solve_stage.with_options(task_runner=stage_runner(p.runtime))(
                current, layout["store"], label, m, s, target, kind,
                p.alignment.pair_mode, list(p.alignment.group_by), worker_slots(p.runtime), anchors, p.verify,
                p.detection, p.pair_retry, p.alignment, p.views, p.detection.channels, p.stitching,
            )
        )
        current = target
    if p.alignment.split_affine:
        m, s = p.round_params("affine", round_name="split_affine")
        rounds.append(split_affine_stage.with_options(task_runner=stage_runner(p.runtime))(
            current, layout["store"], label, p.split, m, s, final, layout["work"], worker_slots(p.runtime)))
    if p.intensity.enabled:
        # After the last round: the maps depend on the final registrations, and stored with the
        # solved XML they belong to the dataset, so every later fusion (here, BigStitcher,
        # BigStitcher-Spark) applies them without estimating again.
        summary.intensity = intensity_tasks.correct_intensity(final, p.intensity, p.views).to_dict()
        artifacts.intensity_note(summary.intensity)
    if points_needed:
        export_n5(PointStore(layout["store"]), layout["n5"], labels=[label], on_invalid="skip")
        summary.n5 = layout["n5"]
    if qc:
        summary.qc = run_qc(summary.input, summary, label, ground_truth=ground_truth)
    artifacts.output_note("Alignment", [f"input: {xml}", f"solved XML: {out}",
                                        f"interest points: {layout['store']} (BigStitcher: {layout['n5']})"
                                        if points_needed else "interest points: none (phase rounds only)"],
                          key="alignment-output")
    return summary


def run_qc(xml: str, summary: AlignmentSummary, label: str, fused: str | None = None,
           ground_truth: str | None = None) -> dict:
    """QC of an alignment (and its fusion) from the run's outputs, published as an artifact."""
    last = summary.last_round
    if last.kind == "split":
        # A split solve is compared with the split dataset it started from (the same views);
        # its sub-views have no ground truth of their own.
        qc_input, store, labels, ground_truth = last.split_xml, last.store, last.labels, None
    else:
        qc_input, store, labels = xml, summary.store, [label]
    phase_links = [k for r in summary.rounds for k in r.phase_links]
    qc = qc_tasks.qc_report(qc_input, summary.output, store, labels, [r.to_dict() for r in last.pair_records],
                            last.solver_report, fused=fused, ground_truth=ground_truth,
                            phase_links=phase_links or None,
                            verify_reports=[r.verify for r in summary.rounds],
                            resolved_params=summary.resolved_params_json)
    artifacts.qc_note(qc)
    return qc


@flow(name="alignment", log_prints=True)
def alignment(
    xml: str,
    out: str | None = None,
    params: PipelineParams | None = None,
    params_file: str | None = None,
    overrides: list[str] | None = None,
    ground_truth: str | None = None,
    views: ViewSelection | None = None,
) -> dict:
    """Align a BigStitcher dataset: the solved XML goes to ``out`` (default ``<xml stem>.aligned.xml``).

    A QC report (``qc_report.html``) is written beside it; with ``ground_truth``
    (a synthetic dataset's) it also scores the alignment. ``views`` selects the views to
    process (channels, illuminations, tiles, angles, timepoints; default all). A "fail" verdict
    fails the flow run (:class:`~rhapso_core.qc.causes.QCFailedError`, event ``rhapso.qc.failed``).
    """
    p = resolve(params, params_file, overrides, views)
    out = out or default_aligned_xml(xml)
    guard_outputs(xml, alignment_outputs(out, "the output XML"), p.runtime.data_roots)
    p, executor = choose_runtime(xml, p, ("detection", "matching", "solve"))
    # The folder's point store is shared by anything aligned into it: one run at a time.
    with output_lock(alignment_layout(out)["folder"], run_id=current_run_id()) as lock, ray_session(p.runtime):
        clear_dead_run_temporaries(lock, out)
        # The solved XML is written under a staged name and moved into place once the point
        # export is complete, so an interrupted run never leaves a new XML beside the
        # previous run's exports; the QC report then describes the published XML.
        staged = staged_name(out)
        summary = run_alignment(xml, out, p, qc=False, final_xml=staged)
        summary.output = publish(staged, out)
        summary.qc = run_qc(summary.input, summary, p.detection.label, ground_truth=ground_truth)
    result = summary.to_dict()
    result["executor"] = executor.to_dict()
    # Outputs are written and the lock released; a failed verdict then fails the run (exit 3 in the CLI).
    raise_if_qc_failed(xml, result, summary.qc, p.detection.dimensions, result)
    return result
