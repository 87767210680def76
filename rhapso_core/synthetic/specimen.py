"""Specimens to image: an analytic one (blobs, fibres, background) or a user-given volume.

Both live in a physical frame in micrometres, axis order x, y, z. The analytic
specimen is a list of primitives, so its content is known exactly at any point:
blob centres are ground truth for detection, and a tile is rendered by
evaluating the primitives at the tile's voxel positions (see :mod:`.render`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from rhapso_core.synthetic.geometry import STREAM_SPECIMEN, grid_extent_um, seed_sequence
from rhapso_core.synthetic.params import SyntheticParams

__all__ = [
    "AnalyticSpecimen",
    "VolumeSpecimen",
    "make_specimen",
    "specimen_box_um",
    "save_blobs_csv",
    "load_blobs_csv",
    "load_tiff_planes",
]

BLOB_CSV_HEADER = ("x_um", "y_um", "z_um", "sigma_um", "amplitude_photons")

# Blobs closer than this many times the sum of their sigmas are not drawn together:
# nuclei do not interpenetrate, and detection ground truth needs separable spots.
_HARD_CORE = 1.5
_FIBRE_STEP_UM = 5.0
_FIBRE_TURN = 0.15  # direction change per step (radians, rms): gently curved fibres
_N_COSINES = 3


@dataclass(frozen=True)
class AnalyticSpecimen:
    """A specimen given by primitives (lengths in um, xyz; brightness in photons).

    Attributes
    ----------
    blob_centres_um : (N, 3) ndarray
        Blob centres (um, xyz).
    blob_sigma_um : (N,) ndarray
        Isotropic Gaussian sigma of each blob (um).
    blob_amplitude : (N,) ndarray
        Peak brightness of each blob (photons).
    fibre_p0_um, fibre_p1_um : (S, 3) ndarray
        Segment ends of the fibres' polylines (um, xyz).
    fibre_sigma_um, fibre_amplitude : (S,) ndarray
        Gaussian cross-section sigma (um) and peak brightness (photons) per segment.
    background : float
        Mean background (photons).
    cos_wavevector : (K, 3) ndarray
        Background modulation wave vectors (radians / um, xyz).
    cos_amplitude, cos_phase : (K,) ndarray
        Relative amplitude (fraction of ``background``) and phase (radians) per cosine.
    """

    blob_centres_um: np.ndarray
    blob_sigma_um: np.ndarray
    blob_amplitude: np.ndarray
    fibre_p0_um: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    fibre_p1_um: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    fibre_sigma_um: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fibre_amplitude: np.ndarray = field(default_factory=lambda: np.zeros(0))
    background: float = 0.0
    cos_wavevector: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    cos_amplitude: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cos_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_blobs(self) -> int:
        return int(self.blob_centres_um.shape[0])

    def value_at(self, points_um: np.ndarray) -> np.ndarray:
        """Exact brightness (photons) at ``(N, 3)`` points (um, xyz); a slow reference for tests."""
        p = np.asarray(points_um, dtype=np.float64)
        out = np.full(p.shape[0], self.background, dtype=np.float64)
        if self.cos_amplitude.size:
            out *= 1.0 + np.cos(p @ self.cos_wavevector.T + self.cos_phase) @ self.cos_amplitude
        for c, s, a in zip(self.blob_centres_um, self.blob_sigma_um, self.blob_amplitude):
            out += a * np.exp(-np.sum((p - c) ** 2, axis=1) / (2.0 * s * s))
        fib = np.zeros(p.shape[0])
        for p0, p1, s, a in zip(self.fibre_p0_um, self.fibre_p1_um, self.fibre_sigma_um, self.fibre_amplitude):
            seg = p1 - p0
            u = np.clip((p - p0) @ seg / max(seg @ seg, 1e-300), 0.0, 1.0)
            r2 = np.sum((p - p0 - u[:, None] * seg) ** 2, axis=1)
            fib = np.maximum(fib, a * np.exp(-r2 / (2.0 * s * s)))
        return out + fib


@dataclass(frozen=True)
class VolumeSpecimen:
    """A user-given volume placed in the physical frame.

    Attributes
    ----------
    data_zyx : (Z, Y, X) ndarray
        Intensities, read as photons (any real dtype).
    voxel_size_xyz : tuple of float
        Voxel size of ``data_zyx`` (um, xyz).
    origin_um : (3,) ndarray
        Physical position of voxel (0, 0, 0)'s centre (um, xyz).
    """

    data_zyx: np.ndarray
    voxel_size_xyz: tuple[float, float, float]
    origin_um: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _coefficients: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def coefficients(self, order: int) -> np.ndarray:
        """float32 spline coefficients of ``data_zyx`` for ``order`` (computed once per order)."""
        from scipy import ndimage

        if order not in self._coefficients:
            data = np.asarray(self.data_zyx, dtype=np.float32)
            if order > 1:
                data = ndimage.spline_filter(data, order=order, output=np.float32)
            self._coefficients[order] = data
        return self._coefficients[order]

    @property
    def extent_um(self) -> np.ndarray:
        """Physical size spanned by the voxel centres (um, xyz)."""
        n_xyz = np.asarray(self.data_zyx.shape[::-1], dtype=np.float64)
        return (n_xyz - 1.0) * np.asarray(self.voxel_size_xyz)

    @classmethod
    def centred_on_grid(
        cls, data_zyx: np.ndarray, voxel_size_zyx: tuple[float, float, float], params: SyntheticParams
    ) -> "VolumeSpecimen":
        """Place ``data_zyx`` (voxel size in um, z y x order) so its centre is the tile grid's centre."""
        data = np.asarray(data_zyx)
        if data.ndim != 3:
            raise ValueError(f"volume must be a 3D (z, y, x) array, got shape {data.shape}")
        vox_xyz = tuple(float(v) for v in voxel_size_zyx[::-1])
        if any(v <= 0 for v in vox_xyz):
            raise ValueError(f"volume voxel_size_zyx must be positive, got {tuple(voxel_size_zyx)}")
        lo, hi = grid_extent_um(params)
        ext = (np.asarray(data.shape[::-1], dtype=np.float64) - 1.0) * np.asarray(vox_xyz)
        return cls(data_zyx=data, voxel_size_xyz=vox_xyz, origin_um=(lo + hi) / 2.0 - ext / 2.0)  # type: ignore[arg-type]


def specimen_box_um(params: SyntheticParams) -> tuple[np.ndarray, np.ndarray]:
    """Box ``(lo, hi)`` (um, xyz) the analytic specimen fills: tiles plus jitter plus ``margin_um``."""
    lo, hi = grid_extent_um(params)
    pad = params.margin_um + np.asarray(params.jitter_voxels) * np.asarray(params.voxel_size_xyz)
    return lo - pad, hi + pad


def _hard_core_keep(centres: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Greedy (in index order) subset in which no two blobs are closer than the hard core."""
    tree = cKDTree(centres)
    pairs = tree.query_pairs(2.0 * _HARD_CORE * float(sigma.max()), output_type="ndarray")
    keep = np.ones(centres.shape[0], dtype=bool)
    if pairs.size == 0:
        return keep
    d = np.linalg.norm(centres[pairs[:, 0]] - centres[pairs[:, 1]], axis=1)
    pairs = pairs[d < _HARD_CORE * (sigma[pairs[:, 0]] + sigma[pairs[:, 1]])]
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    # A later blob is dropped only by an earlier blob that is itself kept.
    for a, b in pairs:
        if keep[a]:
            keep[b] = False
    return keep


def _blobs(params: SyntheticParams, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray):
    volume = float(np.prod(hi - lo))
    n = params.blob_count if params.blob_count is not None else int(round(params.blob_density * volume / 1e6))
    centres = np.zeros((0, 3))
    sigma = np.zeros(0)
    if n == 0:
        return centres, sigma, np.zeros(0)
    # Candidates beyond n make up for those the hard core removes; a fixed number of
    # draws keeps the result a pure function of the seed.
    n_cand = int(np.ceil(n * 1.6)) + 16
    for _ in range(6):
        centres = rng.uniform(lo, hi, size=(n_cand, 3))
        sigma = rng.uniform(params.blob_sigma_um[0], params.blob_sigma_um[1], n_cand)
        keep = _hard_core_keep(centres, sigma)
        if keep.sum() >= n:
            break
        n_cand *= 2
    centres, sigma = centres[keep][:n], sigma[keep][:n]
    a0, a1 = params.blob_amplitude
    amp = np.exp(rng.uniform(np.log(max(a0, 1e-6)), np.log(max(a1, 1e-6)), centres.shape[0]))
    if a0 == a1:
        amp[:] = a0
    return centres, sigma, amp


def _fibres(params: SyntheticParams, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray):
    p0s, p1s, sig, amp = [], [], [], []
    for _ in range(params.fibre_count):
        length = rng.uniform(*params.fibre_length_um)
        n_steps = max(1, int(np.ceil(length / _FIBRE_STEP_UM)))
        p = rng.uniform(lo, hi)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        turns = rng.normal(scale=_FIBRE_TURN, size=(n_steps, 3))
        s = rng.uniform(*params.fibre_sigma_um)
        a = rng.uniform(*params.fibre_amplitude)
        for t in turns:
            d = d + t - (t @ d) * d
            d /= np.linalg.norm(d)
            q = p + d * (length / n_steps)
            p0s.append(p)
            p1s.append(q)
            p = q
        sig += [s] * n_steps
        amp += [a] * n_steps
    if not p0s:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    return np.array(p0s), np.array(p1s), np.array(sig), np.array(amp)


def make_specimen(params: SyntheticParams) -> AnalyticSpecimen:
    """Draw the analytic specimen of ``params`` (seeded; same seed, same specimen).

    Blobs are uniformly placed in :func:`specimen_box_um` with a hard core (no two
    closer than 1.5 times the sum of their sigmas), sigma uniform in ``blob_sigma_um``
    and peak brightness log-uniform in ``blob_amplitude``. Fibres are gently curved
    polylines of 5 um steps. The background is ``background`` times one plus three
    cosines of wavelength 0.6-2 times the specimen size, of summed amplitude
    ``background_modulation``.
    """
    lo, hi = specimen_box_um(params)
    # Blobs, fibres and background draw from separate streams: changing the fibre count
    # leaves the blobs (and their ground truth) as they were.
    centres, sigma, amp = _blobs(params, np.random.default_rng(seed_sequence(params.seed, STREAM_SPECIMEN, 0)), lo, hi)
    f0, f1, fs, fa = _fibres(params, np.random.default_rng(seed_sequence(params.seed, STREAM_SPECIMEN, 1)), lo, hi)
    rng = np.random.default_rng(seed_sequence(params.seed, STREAM_SPECIMEN, 2))
    size = float(np.max(hi - lo))
    direction = rng.normal(size=(_N_COSINES, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    wavelength = rng.uniform(0.6, 2.0, _N_COSINES) * size
    weights = rng.uniform(0.5, 1.0, _N_COSINES)
    phase = rng.uniform(0.0, 2.0 * np.pi, _N_COSINES)
    return AnalyticSpecimen(
        blob_centres_um=centres,
        blob_sigma_um=sigma,
        blob_amplitude=amp,
        fibre_p0_um=f0,
        fibre_p1_um=f1,
        fibre_sigma_um=fs,
        fibre_amplitude=fa,
        background=params.background,
        cos_wavevector=direction * (2.0 * np.pi / wavelength)[:, None],
        cos_amplitude=params.background_modulation * weights / weights.sum(),
        cos_phase=phase,
    )


def save_blobs_csv(path: str | os.PathLike, specimen: AnalyticSpecimen) -> None:
    """Write the blob list (um, photons) as CSV, atomically; row ``i`` is blob index ``i``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(BLOB_CSV_HEADER)
        for c, s, a in zip(specimen.blob_centres_um, specimen.blob_sigma_um, specimen.blob_amplitude):
            w.writerow([repr(float(c[0])), repr(float(c[1])), repr(float(c[2])), repr(float(s)), repr(float(a))])
    os.replace(tmp, path)


def load_blobs_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a blob list written by :func:`save_blobs_csv`: ``(centres_um (N,3) xyz, sigma_um, amplitude)``."""
    path = Path(path)
    with open(path, newline="") as fh:
        header = fh.readline().strip().split(",")
        if tuple(header) != BLOB_CSV_HEADER:
            raise ValueError(f"{path}: not a blob list (header {header}, expected {list(BLOB_CSV_HEADER)})")
        data = np.loadtxt(fh, delimiter=",", ndmin=2, dtype=np.float64)
    if data.size == 0:
        return np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    return data[:, :3].copy(), data[:, 3].copy(), data[:, 4].copy()


def load_tiff_planes(folder: str | os.PathLike, pattern: str = "*.tif") -> np.ndarray:
    """Stack a folder of single-plane TIFFs (sorted by name) into a (z, y, x) array."""
    import tifffile

    files = sorted(Path(folder).glob(pattern))
    if not files:
        raise FileNotFoundError(f"{folder}: no files match {pattern!r}")
    return np.stack([tifffile.imread(f) for f in files])
