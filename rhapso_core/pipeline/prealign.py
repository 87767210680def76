"""The phase-correlation prealignment that the resolver chooses, and the check of its result.

When the resolver's :class:`~rhapso_core.autoparams.PrealignmentDecision` is chosen (stage
error beyond what matching bridges, or overlaps too poor in interest points; see
:mod:`rhapso_core.autoparams.matching`) a phase round runs before the point rounds. Its
result is checked like every solve (:func:`rhapso_core.verify.verify_round`, images only:
a phase round has no stored matches), so a prealignment that made overlaps worse than the
stage positions puts those tiles back. Its links are kept by the point rounds
(``stitching.keep_links``), which holds pairs without enough points where the images put them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rhapso_core.pipeline.dataset import load_dataset
from rhapso_core.pipeline.results import RoundResult
from rhapso_core.pipeline.view_groups import view_groups

__all__ = ["alignment_rounds", "verify_phase_round", "prealign_in_process", "kept_links"]


def kept_links(links: Sequence[dict], solver_report: dict | None, verify: dict | None = None) -> list[dict]:
    """The phase links (``PhaseLink.to_dict()``) that the phase round kept.

    A link the global solve removed (inconsistent with the others: typically a corner
    overlap of a few voxels whose correlation peak is an alias) must not come back as an
    anchor in a later round, where an affine model could bend tiles to honour it; nor
    must the links of a tile the check put back (``verify``: the round's report), which
    would pull it where the images said it was worse.
    """
    removed = {frozenset(((r["a"]["timepoint"], r["a"]["setup"]), (r["b"]["timepoint"], r["b"]["setup"])))
               for r in (solver_report or {}).get("removed_links") or ()}
    reverted = {tuple(v) for r in (verify or {}).get("reverted") or () for v in r.get("views", [r["view"]])}
    return [k for k in links
            if frozenset((tuple(k["view_a"]), tuple(k["view_b"]))) not in removed
            and tuple(k["view_a"]) not in reverted and tuple(k["view_b"]) not in reverted]


def alignment_rounds(params, prealignment=None) -> list[str]:
    """The rounds to run: ``alignment.rounds``, led by a phase round when prealignment was chosen.

    A user's rounds that already hold a phase round are kept as they are.
    """
    rounds = list(params.alignment.rounds)
    if prealignment is not None and prealignment.chosen and "phase" not in rounds:
        return ["phase", *rounds]
    return rounds


def verify_phase_round(xml_in: str, xml_out: str, verify, grouping: Sequence[str] = ("channel", "illumination"),
                       storage_options=None) -> dict | None:
    """Check a phase round's XML against its input (image agreement per overlap); tiles made worse go back.

    ``verify``: :class:`~rhapso_core.verify.VerifyParams` (None or disabled: no check, None returned).
    """
    if verify is None or not verify.enabled:
        return None
    from rhapso_core.verify import verify_round

    sd = load_dataset(xml_in, storage_options)
    groups = view_groups(sd, sd.views(), grouping)
    return verify_round(xml_in, xml_out, None, params=verify, storage_options=storage_options,
                        groups=groups).to_dict()


def prealign_in_process(xml_in: str, xml_out: str, p) -> tuple[RoundResult, dict | None]:
    """One phase round in-process (``p``: PipelineParams), checked, as the flow's phase round;
    with it the anchors for the point rounds (None unless ``stitching.keep_links``)."""
    from rhapso_core.pipeline.phase import phase_round

    rec = phase_round(xml_in, xml_out, p.stitching, p.solver, p.alignment.pair_mode, list(p.alignment.group_by))
    verify = verify_phase_round(xml_in, xml_out, p.verify, p.alignment.grouping)
    links = [k.to_dict() for k in rec.links]
    result = RoundResult("phase", xml_out, len(links), rec.n_ok, rec.solver_report.get("final_error"),
                         rec.transform_name, {"transform_name": rec.transform_name, "report": rec.solver_report,
                                              "n_links": rec.n_ok}, verify=verify, phase_links=links)
    anchors = {"xml": xml_in, "links": kept_links(links, rec.solver_report, verify)} if p.stitching.keep_links else None
    return result, anchors
