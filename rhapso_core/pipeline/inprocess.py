"""The whole alignment in one process (no Prefect, no Ray): resolve, detect, match and solve per round.

The same stage functions the tasks run, one after another; for tests, benchmarks and
scripts that want the alignment without an orchestrator. The flow
(:mod:`flows.alignment`) runs the same steps as tasks.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from rhapso_core.autoparams import Resolution, resolve_parameters
from rhapso_core.io.chunk_cache import caching_decoded_chunks
from rhapso_core.output_layout import STORE_NAME, join, round_xml_name
from rhapso_core.pipeline import detect, match, solve
from rhapso_core.pipeline.overlap_affine_links import (
    measure_overlap_affines, merged_records, phase_held, round_fits_affines, unfitted_pairs, with_fit_steps,
)
from rhapso_core.pipeline.pair_check import IMAGE_LINK, check_pairs_against_images
from rhapso_core.pipeline.phase_fallback import anchored_pairs, anchors_of_unmatched, face_pairs, link_failed_pairs
from rhapso_core.pipeline.retry import retry_failed_pairs
from rhapso_core.pipeline.prealign import alignment_rounds, prealign_in_process


@dataclass(frozen=True)
class InProcessAlignment:
    """Where the solved XML went, the resolution used and how long each step took (s)."""

    xml: str
    resolution: Resolution
    pairs_matched: tuple[str, ...]
    seconds: dict = field(default_factory=dict)
    # Each point round's pair records (after retries and the image check), in round order.
    pair_records: tuple[tuple, ...] = ()


def align_in_process(xml: str, work: str, params, rounds=None) -> InProcessAlignment:
    """Align ``xml`` into the folder ``work`` (point store, one XML per round); returns the last XML.

    ``params`` is a :class:`~rhapso_core.config.PipelineParams`; its ``auto`` values are
    resolved first (:func:`rhapso_core.autoparams.resolve_parameters`). As in the flow: a
    phase round leads when the resolver chose prealignment (its links kept by the point
    rounds), failed pairs are retried, and every round's result is checked.
    """
    # Every stage reads the same tiles: one cache of decoded chunks for all (as the flow's threads).
    with caching_decoded_chunks(int(params.runtime.read_cache_mb * 1024**2)):
        return _align(xml, work, params, rounds)


def _align(xml: str, work: str, params, rounds) -> InProcessAlignment:
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    if params.alignment.flatfield == "estimate":  # as the flow: every read through the estimate
        from rhapso_core.pipeline.flatfield_input import flatfield_input

        xml = flatfield_input(xml, params.intensity, join(work, "flatfield"))
    res = resolve_parameters(xml, params)
    p = res.params
    t1 = time.perf_counter()
    store = join(work, STORE_NAME)
    rounds = list(rounds or alignment_rounds(p, res.prealignment))
    # Phase rounds read pixels, not points (as the flow): a run of phase rounds only detects nothing.
    if any(k != "phase" for k in rounds):
        detect.detect_in_process(xml, store, p.detection)
    t2 = time.perf_counter()
    current, matched, anchors, checks = xml, [], None, []
    for i, kind in enumerate(rounds, start=1):
        out = join(work, round_xml_name(i, kind))
        if kind == "phase":
            rec, anchors = prealign_in_process(current, out, p)
            matched.append(f"phase {rec.pairs_matched}/{rec.pairs}")
            current = out
            continue
        m, s = p.round_params(kind)
        records = [match.match_pair(current, store, a, b, p.detection.label, m)
                   for a, b in match.plan_pairs(current, p.alignment.pair_mode, list(p.alignment.group_by))]
        round_anchors = [anchors] if anchors else []
        if p.pair_retry.enabled and not all(r.ok for r in records):
            held = anchored_pairs(anchors)  # a phase link holds them already: no retries
            free = [r for r in records if frozenset((tuple(r.view_a), tuple(r.view_b))) not in held]
            retried = {(tuple(r.view_a), tuple(r.view_b)): r for r in
                       retry_failed_pairs(current, store, free, p.detection.label, m, p.detection, p.pair_retry)}
            records = [retried.get((tuple(r.view_a), tuple(r.view_b)), r) for r in records]
            if p.pair_retry.phase_link:
                records, extra = link_failed_pairs(current, records, p.stitching, p.pair_retry.min_relative_overlap,
                                                   held)
                round_anchors += [extra] if extra else []
        fitted = None
        if round_fits_affines(s, p.stitching.overlap_affine):
            fitted, fits = measure_overlap_affines(current, store, records, p.detection.label,
                                                   p.stitching.overlap_affine, s.min_matches,
                                                   held=phase_held(round_anchors, face_pairs(
                                                       current, records, p.pair_retry.min_relative_overlap))
                                                   if p.stitching.overlap_affine.phase_held_pairs else None)
            records = with_fit_steps(records, fits)
        if p.pair_retry.image_check:
            rest, replaced, _ = check_pairs_against_images(current, store, unfitted_pairs(records, fitted),
                                                           p.detection.label, p.stitching, float(m.max_epsilon),
                                                           min_matches=s.min_matches)
            records = merged_records(records, rest)
            round_anchors += [replaced] if replaced else []
        if anchors and round_anchors and round_anchors[0] is anchors:
            faces = face_pairs(current, records, p.pair_retry.min_relative_overlap)
            round_anchors = [a for a in [anchors_of_unmatched(anchors, records, faces)] + round_anchors[1:] if a]
        round_anchors += [fitted] if fitted else []
        held_by_image = sum(r.status == IMAGE_LINK for r in records)
        matched.append(f"{sum(r.ok for r in records)}/{len(records)}"
                       + (f" +{held_by_image} image" if held_by_image else ""))
        checks.append(records)
        solve.solve_dataset(current, store, p.detection.label, s, out, phase_anchors=round_anchors,
                            verify=p.verify, grouping=p.alignment.grouping)
        current = out
    t3 = time.perf_counter()
    return InProcessAlignment(current, res, tuple(matched),
                              {"resolve": t1 - t0, "detect": t2 - t1, "match_solve": t3 - t2, "total": t3 - t0},
                              tuple(tuple(r) for r in checks))
