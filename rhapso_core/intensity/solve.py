"""Global fit of per-view intensity maps to overlap samples (linear least squares).

Each sample value ``x`` is first flat-field corrected, ``x' = (x - d) / F(u, w) + d``
(:mod:`rhapso_core.intensity.flatfield`; ``x' = x`` without one). Unknowns: each
view's cell coefficients ``A`` and ``B = s * beta`` (``s``: the median sampled value,
so all unknowns are of order 1). For every sample of a pair the mapped values agree:

    r = (A_a x'_a + B_a - A_b x'_b - B_b) / (s sqrt(M))       (M: samples in all)

with ``A``, ``B`` interpolated between cell centres (:mod:`rhapso_core.intensity.model`).
Added rows, weighted by the information the data hold on each unknown (``h_k``, the
diagonal of ``J^T J`` at identity, so the weights do not depend on the noise level):

* identity: ``sqrt(lambda h_k / n_k) (A_k - 1)`` and ``sqrt(lambda h_k / n_k) beta_k`` per cell
  (``n_k``: the cell's samples, interpolation weights summed): worth ``lambda`` of one sample;
* smoothness (grid model): ``sqrt(mu h) (A_c - A_c')`` and likewise ``beta`` for
  neighbouring cells of a view (``h``: the view's mean);
* without ``offsets``: ``B_k = d (1 - A_k)`` (a gain about the dark level ``d``);
* grid model: each view's mean map (the mean of its cells) equals its one-map-per-view fit:
  a smooth trend over world position applied to all views alike is invisible to the overlaps,
  and the cells would otherwise drift along it;
* gauge, per group (timepoint, channel, illumination): the mean mapped value over the
  group's samples equals their mean corrected value (overall brightness kept; without
  it every map would shrink towards 0, where all views agree) and, with ``offsets``,
  the mean ``beta`` of the group's cells is 0; or, with ``reference`` a setup id, that
  view's cells are held at identity.

The system is small (two unknowns per cell) and solved through its normal equations;
then once more without the samples whose residual exceeds ``outlier_mad`` robust
standard deviations.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from rhapso_core.intensity.model import FlatField, ViewIntensity, cell_weights, normalised_position
from rhapso_core.intensity.params import IntensityParams
from rhapso_core.intensity.sampling import PairSamples, SampledView

__all__ = ["IntensityError", "IntensitySolution", "PairFit", "solve_intensities", "flat_corrected"]

_GAUGE_WEIGHT = 30.0  # gauge rows dominate every data row


class IntensityError(ValueError):
    """Intensity correction cannot be estimated (no overlaps, bad samples)."""


@dataclass(frozen=True)
class PairFit:
    """How well a pair agrees: RMS of the relative difference of its two views' samples."""

    a: Hashable
    b: Hashable
    n_samples: int
    rms_before: float  # RMS((x_a - x_b) / s), raw values
    rms_after: float  # RMS((y_a - y_b) / s), mapped values
    ratio_before: float  # mean x_a / mean x_b
    ratio_after: float


@dataclass(frozen=True)
class IntensitySolution:
    """Per-view maps (identity, with the flat field, for views without usable overlaps), flat fields
    per channel, and fit figures."""

    maps: dict[Hashable, ViewIntensity]
    flatfields: dict[Hashable, FlatField]
    pairs: tuple[PairFit, ...]
    scale: float
    n_samples: int
    n_outliers: int
    views_without_overlap: tuple[Hashable, ...] = field(default=())


def flat_corrected(values: np.ndarray, points_xyz: np.ndarray, size_xyz, ff: FlatField | None) -> np.ndarray:
    """``(x - d) / F(u, w) + d`` at view voxel points (``x`` itself without a flat field)."""
    if ff is None:
        return np.asarray(values, np.float64)
    u = normalised_position(points_xyz[:, 0], size_xyz[0])
    w = normalised_position(points_xyz[:, 1], size_xyz[1])
    return (np.asarray(values, np.float64) - ff.dark) / ff.evaluate(u, w) + ff.dark


def solve_intensities(
    views: Sequence[SampledView],
    samples: Sequence[PairSamples],
    params: IntensityParams,
    flatfields: Mapping[Hashable, FlatField] | None = None,
) -> IntensitySolution:
    """Fit the maps of ``views`` to the overlap ``samples`` (see the module docstring).

    ``flatfields`` (by channel) are applied to the samples first and carried into the maps.
    """
    flatfields = dict(flatfields or {})
    by_id = {v.view_id: v for v in views}
    samples = [s for s in samples if s.n > 0]
    if not samples:
        raise IntensityError("intensity correction: no overlapping views with enough samples")
    cells = tuple(params.cells) if params.model == "grid" else (1, 1, 1)
    n_cell = int(np.prod(cells))
    used = sorted({s.a for s in samples} | {s.b for s in samples}, key=repr)
    offsets = {vid: k * n_cell for k, vid in enumerate(used)}
    n_cells_all = n_cell * len(used)
    n_par = 2 * n_cells_all

    def side(which):
        idx, w, x = [], [], []
        for ps in samples:
            vid = ps.a if which == "a" else ps.b
            view = by_id[vid]
            pts = ps.points_a if which == "a" else ps.points_b
            vals = ps.values_a if which == "a" else ps.values_b
            i, wt = cell_weights(pts, view.size_xyz, cells)
            idx.append(i + offsets[vid])
            w.append(wt)
            x.append(flat_corrected(vals, pts, view.size_xyz, flatfields.get(view.channel)))
        return np.concatenate(idx), np.concatenate(w), np.concatenate(x)

    ia, wa, xa = side("a")
    ib, wb, xb = side("b")
    m = xa.shape[0]
    scale = float(np.median(np.concatenate([xa, xb])))
    if not np.isfinite(scale) or scale <= 0:
        scale = float(np.max(np.abs(np.concatenate([xa, xb])))) or 1.0
    pair_of = np.concatenate([np.full(s.n, k) for k, s in enumerate(samples)])
    groups = sorted({by_id[s.a].group for s in samples}, key=repr)
    gidx = {g: k for k, g in enumerate(groups)}
    sample_group = np.array([gidx[by_id[samples[p].a].group] for p in range(len(samples))])[pair_of]

    def data_matrix(rows_sel):
        # Columns: A cells then beta cells. y = sum_k w_k (A_k x + s beta_k).
        n = int(rows_sel.sum())
        r = np.repeat(np.arange(n), ia.shape[1])
        ka = ia[rows_sel].ravel()
        kb = ib[rows_sel].ravel()
        va = (wa[rows_sel] * xa[rows_sel, None]).ravel()
        vb = (wb[rows_sel] * xb[rows_sel, None]).ravel()
        ca = (wa[rows_sel] * scale).ravel()
        cb = (wb[rows_sel] * scale).ravel()
        plus = sparse.csr_matrix(
            (np.concatenate([va, ca]), (np.concatenate([r, r]), np.concatenate([ka, n_cells_all + ka]))), shape=(n, n_par))
        minus = sparse.csr_matrix(
            (np.concatenate([vb, cb]), (np.concatenate([r, r]), np.concatenate([kb, n_cells_all + kb]))), shape=(n, n_par))
        return plus, minus

    everything = np.ones(m, bool)
    plus0, minus0 = data_matrix(everything)
    info = np.asarray(plus0.multiply(plus0).sum(axis=0) + minus0.multiply(minus0).sum(axis=0)).ravel() / (scale * scale * m)
    for lo, hi in ((0, n_cells_all), (n_cells_all, n_par)):
        seen = info[lo:hi] > 0
        info[lo:hi][~seen] = info[lo:hi][seen].mean() if seen.any() else 1.0

    rows, cols, vals, rhs = [], [], [], []
    r = 0
    # The identity pull is worth `regularisation` of one of the cell's own samples (interpolation
    # weights summed): it settles what the overlaps leave open and nothing they determine. Relative to
    # all of a cell's samples (as before) it biased the gains of a 4 x 3 grid by 1-1.5 % (the long-range
    # modes of a chain of views are weak), the fused image's worst block 1.8 % against 0.9 %.
    seen_by = np.bincount(ia.ravel(), wa.ravel(), minlength=n_cells_all) + np.bincount(ib.ravel(), wb.ravel(),
                                                                                       minlength=n_cells_all)
    seen_by = np.maximum(np.concatenate([seen_by, seen_by]), 1.0)
    wid = np.sqrt(params.regularisation * info / seen_by)
    for k in range(n_par):
        rows.append(r); cols.append(k); vals.append(wid[k]); rhs.append(wid[k] if k < n_cells_all else 0.0); r += 1
    if n_cell > 1:
        cz, cy, cx = cells[2], cells[1], cells[0]
        links = []
        for k in range(cz):
            for j in range(cy):
                for i in range(cx):
                    c0 = (k * cy + j) * cx + i
                    if i + 1 < cx: links.append((c0, c0 + 1))
                    if j + 1 < cy: links.append((c0, c0 + cx))
                    if k + 1 < cz: links.append((c0, c0 + cx * cy))
        for vid in used:
            o = offsets[vid]
            for off in (0, n_cells_all):
                wsm = np.sqrt(params.smoothness * info[off + o: off + o + n_cell].mean())
                for c0, c1 in links:
                    rows += [r, r]; cols += [off + o + c0, off + o + c1]; vals += [wsm, -wsm]; rhs.append(0.0); r += 1
    if not params.offsets:
        # Gains about the dark level: B_k = d (1 - A_k), i.e. beta_k + (d / s) A_k = d / s.
        for vid in used:
            ff = flatfields.get(by_id[vid].channel)
            dk = (ff.dark if ff is not None else float(params.dark_level or 0.0)) / scale
            o = offsets[vid]
            for c in range(n_cell):
                rows += [r, r]; cols += [n_cells_all + o + c, o + c]
                vals += [_GAUGE_WEIGHT, _GAUGE_WEIGHT * dk]; rhs.append(_GAUGE_WEIGHT * dk); r += 1
    if params.reference == "mean":
        for g in groups if params.offsets else ():
            members = [v for v in used if by_id[v].group == g]
            for vid in members:
                for c in range(n_cell):
                    rows.append(r); cols.append(n_cells_all + offsets[vid] + c)
                    vals.append(_GAUGE_WEIGHT / (len(members) * n_cell))
            rhs.append(0.0); r += 1
    else:
        ref = [v for v in used if (v[1] if isinstance(v, tuple) else v) == params.reference]
        if not ref:
            raise IntensityError(f"intensity.reference: setup {params.reference} has no overlapping view")
        for vid in ref:
            for off, target in ((0, 1.0), (n_cells_all, 0.0)):
                for c in range(n_cell):
                    rows.append(r); cols.append(off + offsets[vid] + c); vals.append(_GAUGE_WEIGHT)
                    rhs.append(_GAUGE_WEIGHT * target); r += 1
    if n_cell > 1:
        # Any smooth function of world position applied to every view alike is invisible to the
        # overlaps (it could be the specimen's); with a free map per cell the fit drifts along such
        # trends (measured: 8 % across a 3 x 2 mosaic). Each view's mean map is held at its one-map
        # fit, which the overlaps do determine; the cells then shape the map inside each view.
        per_view = solve_intensities(views, samples, params.model_copy(update={"model": "view"}), flatfields)
        for vid in used:
            o = offsets[vid]
            one = per_view.maps[vid]
            for off, target in ((0, float(one.a.ravel()[0])), (n_cells_all, float(one.b.ravel()[0]) / scale)):
                for c in range(n_cell):
                    rows.append(r); cols.append(off + o + c); vals.append(_GAUGE_WEIGHT / n_cell)
                rhs.append(_GAUGE_WEIGHT * target); r += 1
    fixed = sparse.csr_matrix((vals, (rows, cols)), shape=(r, n_par))
    fixed_rhs = np.asarray(rhs)

    def solve(sel):
        plus, minus = data_matrix(sel)
        n = int(sel.sum())
        norm = scale * np.sqrt(n)
        blocks, targets = [(plus - minus) / norm, fixed], [np.zeros(n), fixed_rhs]
        if params.reference == "mean":
            grp = sample_group[sel]
            counts = np.bincount(grp, minlength=len(groups)).astype(np.float64)
            gmat = sparse.csr_matrix((np.ones(n), (grp, np.arange(n))), shape=(len(groups), n))
            gmat = sparse.diags(_GAUGE_WEIGHT / np.maximum(2.0 * counts, 1.0)) @ gmat
            blocks.append(gmat @ (plus + minus) / scale)
            targets.append(gmat @ (xa[sel] + xb[sel]) / scale)
        J = sparse.vstack(blocks, format="csr")
        t = np.concatenate(targets)
        H = (J.T @ J).toarray()
        return np.linalg.lstsq(H, J.T @ t, rcond=None)[0]

    def residual(theta):
        ya = np.sum(theta[ia] * wa, axis=1) * xa + scale * np.sum(theta[n_cells_all + ia] * wa, axis=1)
        yb = np.sum(theta[ib] * wb, axis=1) * xb + scale * np.sum(theta[n_cells_all + ib] * wb, axis=1)
        return ya, yb

    theta = solve(everything)
    ya, yb = residual(theta)
    rel = (ya - yb) / scale
    mad = 1.4826 * float(np.median(np.abs(rel - np.median(rel))))
    keep = np.abs(rel - np.median(rel)) <= params.outlier_mad * max(mad, 1e-12)
    if not keep.all():
        theta = solve(keep)
        ya, yb = residual(theta)

    shape_zyx = (cells[2], cells[1], cells[0])
    maps = {}
    for vid in used:
        o = offsets[vid]
        maps[vid] = ViewIntensity(
            by_id[vid].size_xyz, theta[o: o + n_cell].reshape(shape_zyx),
            scale * theta[n_cells_all + o: n_cells_all + o + n_cell].reshape(shape_zyx),
            flatfields.get(by_id[vid].channel),
        )
    lonely = tuple(v.view_id for v in views if v.view_id not in maps)
    for v in views:  # nothing to match, but the channel's flat field still applies
        if v.view_id not in maps:
            maps[v.view_id] = ViewIntensity.affine(v.size_xyz, 1.0, 0.0, flatfields.get(v.channel))

    fits = []
    for k, s in enumerate(samples):
        sel = pair_of == k
        fits.append(PairFit(
            s.a, s.b, s.n,
            float(np.sqrt(np.mean(((s.values_a - s.values_b) / scale) ** 2))),
            float(np.sqrt(np.mean(((ya[sel & keep] - yb[sel & keep]) / scale) ** 2))) if (sel & keep).any() else float("nan"),
            _ratio(s.values_a, s.values_b), _ratio(ya[sel], yb[sel]),
        ))
    return IntensitySolution(maps, flatfields, tuple(fits), scale, int(m), int((~keep).sum()), lonely)


def _ratio(a: np.ndarray, b: np.ndarray) -> float:
    mb = float(np.mean(b))
    return float(np.mean(a)) / mb if mb != 0 else float("nan")
