"""No round's result is worse than its input without saying so.

After a round's solve, every overlap is measured twice: under the round's input
registrations (the stage positions, or the previous round's result) and under the
solved ones. Two figures per overlap:

* image agreement: the NCC of both views sampled at the same world points of the
  overlap at a coarse pyramid level (:func:`rhapso_core.qc.fusion.overlap_ncc`, the
  same figure as the QC report's "overlap correlation before / after");
* the link residual: the mean world distance of the overlap's stored matches.

An overlap is *worse* when its NCC fell by more than ``max_ncc_drop`` and by more than
``ncc_drop_sigmas`` standard errors of the difference (:func:`rhapso_core.qc.ncc_error.ncc_fell`:
a small overlap whose correlation one structure carries says little either way); where no NCC
can be measured (too few samples inside both views, constant content, different
channels) when its mean match distance grew by more than ``max_link_increase``.
Link residuals alone cannot see a tile placed consistently wrong (a wrong but
self-consistent match set has small residuals after the solve); the images can.

Reverting. Tiles are reverted one at a time, greedily: among the tiles that the
solve moved and that touch a worse overlap, the one with the most worse overlaps
(ties: the larger summed NCC drop) gets its input registration back (the round's
correction for it is dropped, not prepended), and its overlaps are measured again.
A tile whose revert was turned down is tried again only after another tile was
reverted (its neighbourhood changed: a distortion spread over several tiles comes
back one tile at a time); a revert is final, so this ends. A "tile" is a solver tile: views that move
together (the channels and illuminations of one stage position, ``alignment.grouping``)
got one correction and are reverted together, judged on the overlaps of all of
them; reverting one channel alone would split a tile the microscope imaged at one
position. The revert is kept only if it leaves that tile
with fewer worse overlaps and lowers none of its overlaps' NCC (against the solved
state) by more than that; otherwise the tile keeps its solved registration. This handles a revert that makes
neighbours inconsistent: a tile is put back only where the images say that its
old place agrees better with its (possibly moved) neighbours than its new one; a
revert that merely moves the disagreement to other overlaps is undone. A tile
that the solve left where it was (no usable links) while its neighbours moved
makes its overlaps worse without anything to revert: its neighbours are not
dragged back to it (their other overlaps would pay). Overlaps still worse at the
end are reported as such (the QC verdict then fails), never hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from rhapso_core import transforms
from rhapso_core.io import ImageIOError
from rhapso_core.pipeline.dataset import DatasetError, open_view, view_geometry
from rhapso_core.pipeline.in_threads import in_threads
from rhapso_core.pointstore import PointStore
from rhapso_core.qc.fusion import comparable_pairs, overlap_ncc
from rhapso_core.qc.ncc_error import ncc_fell
from rhapso_core.spimdata import ViewId, load_xml, save_xml
from rhapso_core.verify.params import VerifyParams

__all__ = ["OverlapCheck", "TileRevert", "VerifyReport", "choose_reverts", "verify_round"]

Pair = tuple[ViewId, ViewId]


def _name(v: ViewId) -> str:
    return f"t{v[0]} s{v[1]}"


def _num(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


@dataclass(frozen=True)
class OverlapCheck:
    """One overlap under the round's input and under its result (world units for distances)."""

    a: ViewId
    b: ViewId
    ncc_before: float | None
    ncc_after: float | None
    n_samples: int
    link_before: float | None
    link_after: float | None
    n_matches: int
    worse: bool
    why: str = ""
    #: Standard errors of ``ncc_before`` and ``ncc_after``
    #: (:func:`rhapso_core.qc.ncc_error.ncc_standard_error`; 0: unknown).
    ncc_se_before: float = 0.0
    ncc_se_after: float = 0.0

    @property
    def ncc_change(self) -> float | None:
        if self.ncc_before is None or self.ncc_after is None:
            return None
        return self.ncc_after - self.ncc_before

    @property
    def name(self) -> str:
        return f"{_name(self.a)} - {_name(self.b)}"

    def to_dict(self) -> dict:
        return {"a": list(self.a), "b": list(self.b), "name": self.name,
                "ncc_before": _num(self.ncc_before), "ncc_after": _num(self.ncc_after), "n_samples": self.n_samples,
                "ncc_se_before": _num(self.ncc_se_before), "ncc_se_after": _num(self.ncc_se_after),
                "link_before": _num(self.link_before), "link_after": _num(self.link_after),
                "n_matches": self.n_matches, "worse": self.worse, "why": self.why}


@dataclass(frozen=True)
class TileRevert:
    """A tile that kept its input registration, and why.

    ``view`` is the tile's representative (its lowest view); ``members`` every view of
    the tile (one solver tile: the views that move together), all reverted.
    """

    view: ViewId
    reason: str
    worse_before: int
    worse_after: int
    members: tuple[ViewId, ...] = ()

    @property
    def views(self) -> tuple[ViewId, ...]:
        return self.members or (self.view,)

    @property
    def name(self) -> str:
        if len(self.views) == 1:
            return _name(self.view)
        return f"{_name(self.view)} (with {', '.join(_name(v) for v in self.views if v != self.view)})"

    def to_dict(self) -> dict:
        return {"view": list(self.view), "views": [list(v) for v in self.views], "name": self.name,
                "reason": self.reason,
                "worse_overlaps_solved": self.worse_before, "worse_overlaps_reverted": self.worse_after}


@dataclass(frozen=True)
class VerifyReport:
    """What the check measured and did to one round's result."""

    measured: list[OverlapCheck]
    final: list[OverlapCheck]
    reverted: list[TileRevert]
    tried: list[ViewId]
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def still_worse(self) -> list[OverlapCheck]:
        return [c for c in self.final if c.worse]

    @property
    def worse_than_input(self) -> bool:
        """The solve made something worse (reverted tiles, or overlaps still worse)."""
        return bool(self.reverted or self.still_worse)

    def summary(self) -> str:
        parts = [f"{len(self.final)} overlaps checked"]
        if self.reverted:
            parts.append("reverted to their input registration: " + "; ".join(
                f"{r.name} ({r.reason})" for r in self.reverted))
        if self.still_worse:
            parts.append("still worse than the input: " + "; ".join(f"{c.name} ({c.why})" for c in self.still_worse))
        if not self.worse_than_input:
            parts.append("none worse than the input")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"reverted": [r.to_dict() for r in self.reverted], "tried": [list(v) for v in self.tried],
                "still_worse": [c.name for c in self.still_worse], "worse_than_input": self.worse_than_input,
                "overlaps_measured": [c.to_dict() for c in self.measured],
                "overlaps": [c.to_dict() for c in self.final], "params": self.params, "notes": list(self.notes),
                "summary": self.summary()}


#: ``(ncc or None, samples)`` or ``(ncc or None, samples, standard error)`` of one overlap.
NccFn = Callable[[ViewId, ViewId, np.ndarray, np.ndarray], tuple]
LinkFn = Callable[[ViewId, ViewId, np.ndarray, np.ndarray], tuple[float | None, int]]


def _check(pair: Pair, before, regs, ncc_fn: NccFn | None, link_fn: LinkFn | None, p: VerifyParams,
           cache: dict) -> OverlapCheck:
    a, b = pair

    def measured(fn, regs_):
        key = (fn is ncc_fn, a, b, regs_[a].tobytes(), regs_[b].tobytes())
        if key not in cache:
            cache[key] = fn(a, b, regs_[a], regs_[b]) if fn is not None else (None, 0)
        return cache[key]

    n0, ns, se0 = _with_error(measured(ncc_fn, before))
    n1, _, se1 = _with_error(measured(ncc_fn, regs))
    l0, nm = measured(link_fn, before)
    l1, _ = measured(link_fn, regs)
    worse, why = False, ""
    if n0 is not None and n1 is not None:
        if ncc_fell(n0, n1, se0, se1, p.max_ncc_drop, p.ncc_drop_sigmas):
            worse, why = True, f"NCC {n0:.3f} -> {n1:.3f}"
    elif l0 is not None and l1 is not None and l1 > l0 + p.max_link_increase:
        worse, why = True, f"mean match distance {l0:.2f} -> {l1:.2f}"
    return OverlapCheck(a, b, n0, n1, ns, l0, l1, nm, worse, why, se0, se1)


def _with_error(result: tuple) -> tuple:
    """``(ncc, samples, standard error)`` from an :data:`NccFn` result (an error it does not give: 0)."""
    return (result[0], result[1], float(result[2]) if len(result) > 2 and result[2] is not None else 0.0)


def choose_reverts(
    pairs: Sequence[Pair],
    before: Mapping[ViewId, np.ndarray],
    after: Mapping[ViewId, np.ndarray],
    ncc_fn: NccFn | None,
    link_fn: LinkFn | None,
    params: VerifyParams | None = None,
    groups: Mapping[ViewId, ViewId] | None = None,
) -> tuple[dict[ViewId, np.ndarray], VerifyReport]:
    """The registrations to keep and the report (the greedy revert of the module docstring).

    ``before`` / ``after``: view-voxel -> world 4x4 (x y z) of the round's input and result.
    ``ncc_fn(a, b, A_a, A_b)`` and ``link_fn`` return ``(value or None, count)`` for one
    overlap under the given registrations. ``groups``: ``{view: its tile's representative}``
    (:func:`rhapso_core.pipeline.view_groups.view_groups`); the views of one tile are
    reverted together. None or a view missing from it: the view is a tile of its own.
    """
    p = params or VerifyParams()
    cache: dict = {}
    current = {v: np.asarray(m, dtype=np.float64) for v, m in after.items()}
    before = {v: np.asarray(m, dtype=np.float64) for v, m in before.items()}
    tile_of = {v: (groups or {}).get(v, v) for v in current}
    members: dict[ViewId, list[ViewId]] = {}
    for v in sorted(current):
        members.setdefault(tile_of[v], []).append(v)
    checks = {pr: _check(pr, before, current, ncc_fn, link_fn, p, cache) for pr in pairs}
    measured = list(checks.values())
    moved = {tile_of[v] for v in current if v in before and not np.allclose(current[v], before[v], atol=1e-9)}
    tried: list[ViewId] = []
    reverted: list[TileRevert] = []
    rejected: set[ViewId] = set()
    done: set[ViewId] = set()

    def touches(t, pr):
        return tile_of.get(pr[0], pr[0]) == t or tile_of.get(pr[1], pr[1]) == t

    while True:
        worse = [pr for pr, c in checks.items() if c.worse]
        cand = {tile_of.get(v, v) for pr in worse for v in pr} & moved - rejected - done
        if not cand:
            break

        def rank(t):
            own = [checks[pr] for pr in worse if touches(t, pr)]
            drop = sum(-(c.ncc_change or 0.0) for c in own)
            return (-len(own), -drop, t)

        t = min(cand, key=rank)
        if t not in tried:
            tried.append(t)
        own = [pr for pr in pairs if touches(t, pr)]
        trial = {**current, **{v: before[v] for v in members[t] if v in before}}
        new = {pr: _check(pr, before, trial, ncc_fn, link_fn, p, cache) for pr in own}
        n_old = sum(checks[pr].worse for pr in own)
        n_new = sum(c.worse for c in new.values())
        # The revert must not spoil any overlap that the solve got right (Pareto, not a sum:
        # NCC saturates, so a sum would trade a good overlap for a bad one).
        spoils = any(ncc_fell(checks[pr].ncc_after, new[pr].ncc_after, checks[pr].ncc_se_after, new[pr].ncc_se_after,
                              p.max_ncc_drop, p.ncc_drop_sigmas) for pr in own)
        if n_new < n_old and not spoils:
            why = "; ".join(f"{checks[pr].name}: {checks[pr].why}" for pr in own if checks[pr].worse)
            reverted.append(TileRevert(t, why, n_old, n_new, tuple(members[t])))
            current = trial
            checks.update(new)
            done.add(t)
            # Its neighbours' overlaps changed: a tile turned down before may be worth reverting now
            # (each revert is final, so this ends after at most one pass per tile).
            rejected.clear()
        else:
            rejected.add(t)
    report = VerifyReport(measured, list(checks.values()), reverted, tried, p.model_dump(mode="json"))
    return current, report


def _stored_matches(store: PointStore, views, labels) -> dict[Pair, tuple[np.ndarray, np.ndarray]]:
    """Matched points in each view's voxel frame (x y z) per pair, all labels together."""
    points: dict = {}
    out: dict[Pair, tuple[np.ndarray, np.ndarray]] = {}
    for label in labels:
        for c in store.read_all_correspondences(label, on_invalid="skip"):
            a, b = c.view_a, c.view_b
            if a not in views or b not in views or len(c.idx_a) == 0:
                continue
            for v in (a, b):
                if (v, label) not in points:
                    points[(v, label)] = store.read_points(v, label).loc_xyz
            pa, pb = points[(a, label)][c.idx_a], points[(b, label)][c.idx_b]
            if (b, a) in out or a > b:
                a, b, pa, pb = b, a, pb, pa
            if (a, b) in out:
                pa, pb = np.concatenate([out[(a, b)][0], pa]), np.concatenate([out[(a, b)][1], pb])
            out[(a, b)] = (pa, pb)
    return out


def verify_round(
    input_xml: str,
    solved_xml: str,
    store_uri: str | None,
    labels: str | Sequence[str] = "beads",
    params: VerifyParams | None = None,
    out_xml: str | None = None,
    storage_options: dict | None = None,
    groups: Mapping[ViewId, ViewId] | None = None,
) -> VerifyReport:
    """Check one round's solved XML against its input XML; revert the tiles it made worse.

    Parameters
    ----------
    input_xml : str
        The XML the round started from (its registrations are "before").
    solved_xml : str
        The round's solved XML (its registrations are "after").
    store_uri : str or None
        Interest-point store with the round's correspondences (link residuals); None: images only.
    labels : str or sequence of str
        Labels whose correspondences count.
    params : VerifyParams, optional
        Tolerances and sampling sizes.
    out_xml : str, optional
        Where the XML with the reverted tiles goes (default: ``solved_xml``, rewritten
        atomically, only when a tile was reverted).
    groups : mapping, optional
        ``{view: its tile's representative}``: views that the solve moved together
        (channels / illuminations of one tile) are reverted together. None: every view
        is its own tile.

    Returns
    -------
    VerifyReport
    """
    p = params or VerifyParams()
    labels = [labels] if isinstance(labels, str) else list(labels)
    sd_in = load_xml(input_xml, storage_options)
    sd_out = load_xml(solved_xml, storage_options)
    known = set(sd_in.views())
    views = [v for v in sd_out.views() if v in known]
    geom_in, geom_out = view_geometry(sd_in, views), view_geometry(sd_out, views)
    before = {v: g[0] for v, g in geom_in.items()}
    after = {v: g[0] for v, g in geom_out.items()}
    sizes = {v: g[1] for v, g in geom_in.items()}
    ncc_pairs = set(comparable_pairs(sd_in, views, geom_in, geom_out))
    matches = {}
    if store_uri is not None:
        matches = _stored_matches(PointStore(store_uri, storage_options=storage_options, mode="r"), set(views), labels)
    pairs = sorted(ncc_pairs | set(matches))
    sources: dict = {}
    unreadable: list[str] = []
    for a, b in pairs:  # opened here, in the pairs' order, not by the threads below
        if (a, b) not in ncc_pairs:
            continue
        for v in (a, b):
            if v not in sources:
                try:
                    sources[v] = open_view(sd_in, v, storage_options)
                except (ImageIOError, DatasetError) as e:  # points-only data: the links decide
                    sources[v] = None
                    unreadable.append(f"{_name(v)}: {e}")

    def correlate(a, b, ma, mb):
        if sources[a] is None or sources[b] is None:
            return None, 0
        r = overlap_ncc(sources[a], ma, sizes[a], sources[b], mb, sizes[b],
                        n_samples=p.ncc_samples, max_voxels=p.max_read_voxels)
        return r["ncc"], int(r["n_samples"]), r["ncc_se"]

    # Every overlap's correlation under the input's and the solved registrations, measured side by side
    # (reads, decodes and resampling release the GIL); the greedy reverts then look them up, and measure
    # only the combinations a revert makes.
    def key(a, b, ma, mb):
        return a, b, np.asarray(ma, dtype=np.float64).tobytes(), np.asarray(mb, dtype=np.float64).tobytes()

    jobs = {key(a, b, regs[a], regs[b]): (a, b, regs[a], regs[b])
            for a, b in pairs if (a, b) in ncc_pairs for regs in (before, after)}
    measured = dict(zip(jobs, in_threads(lambda job: correlate(*job), list(jobs.values()))))

    def ncc_fn(a, b, ma, mb):
        if (a, b) not in ncc_pairs:
            return None, 0
        k = key(a, b, ma, mb)
        return measured[k] if k in measured else correlate(a, b, ma, mb)

    def link_fn(a, b, ma, mb):
        if (a, b) not in matches:
            return None, 0
        pa, pb = matches[(a, b)]
        d = np.linalg.norm(transforms.apply(ma, pa) - transforms.apply(mb, pb), axis=1)
        return float(d.mean()), int(len(d))

    _, report = choose_reverts(pairs, before, after, ncc_fn, link_fn, p, groups=groups)
    if unreadable:
        report = dataclasses.replace(report, notes=[f"images not read, match distances only: {u}" for u in unreadable])
    if report.reverted:
        regs = {v: sd_in.registrations[v] for r in report.reverted for v in r.views}
        save_xml(sd_out.with_registrations(regs), out_xml or solved_xml, storage_options=storage_options)
    elif out_xml is not None and out_xml != solved_xml:
        save_xml(sd_out, out_xml, storage_options=storage_options)
    return report
