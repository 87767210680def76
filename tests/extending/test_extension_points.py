"""The registries are the only place a new detector, transform model or image format is added.

Each test registers a real extra one (not a stand-in) exactly as ``docs/extending.md`` says and
checks it is reached through the same lookups the parameter validation, the CLI and the stages
use; then removes it, so the rest of the suite sees the built-ins only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import ndimage

from rhapso_core import model_registry
from rhapso_core.config import PipelineParams
from rhapso_core.detection import DetectionParams, detect_dog
from rhapso_core.detection import registry as det_registry
from rhapso_core.detection.registry import Detector, register_detector
from rhapso_core.matching import MatchingParams
from rhapso_core.matching.match import model_for
from rhapso_core.model_registry import ModelSpec, register_model
from rhapso_core.models import Model, _assemble, _prepare
from rhapso_core.solver import Link, SolverParams, solve
from rhapso_core.solver.select import candidates


# ------------------------------------------------------------------ transform model


@dataclass(frozen=True)
class ScaledTranslationModel(Model):
    """Per-axis scale + shift (x, y, z): a stage or objective whose scale calibration is off per axis."""

    name: str = "scaled_translation"
    min_matches: int = 2

    def fit_batch(self, p, q, w=None):
        p, q, w, pc, qc, wsum = _prepare(p, q, w)
        dp, dq = p - pc[:, None], q - qc[:, None]
        var = np.einsum("bn,bnk->bk", w, dp * dp)
        cov = np.einsum("bn,bnk->bk", w, dp * dq)
        bad = np.any(var <= 1e-12 * np.maximum(var.max(axis=1, keepdims=True), 1e-300), axis=1) | (wsum <= 0)
        scale = cov / np.where(var > 0, var, 1.0)
        lin = np.zeros((p.shape[0], 3, 3))
        lin[:, [0, 1, 2], [0, 1, 2]] = scale
        out = _assemble(lin, pc, qc)
        out[bad] = np.nan
        return out


@pytest.fixture
def scaled_translation():
    register_model(ModelSpec("scaled_translation", ScaledTranslationModel, dof=6, description="per-axis scale"))
    yield
    model_registry._MODELS.pop("scaled_translation", None)


def test_a_registered_model_is_accepted_by_params_and_cli_and_used_by_matching_and_solver(scaled_translation):
    # parameter validation (matching, solver, alignment rounds) and the CLI's choices
    assert model_registry.model_names() == ["translation", "rigid", "scaled_translation", "affine"]
    mp = MatchingParams(model="scaled_translation", regularization_model="none")
    pp = PipelineParams.model_validate({"alignment": {"rounds": ["rigid", "scaled_translation"]}})
    assert pp.alignment.rounds[-1] == "scaled_translation"
    m, s = pp.round_params("scaled_translation")  # what the alignment flow hands the round's tasks
    assert m.model == "scaled_translation" and s.max_model == "scaled_translation"
    from rhapso_cli.main import build_parser

    args = build_parser().parse_args(["match", "in.xml", "--out", "o.xml", "--model", "scaled_translation"])
    assert args.model == "scaled_translation"
    # the solver's auto selection orders it by degrees of freedom and keeps it off the sparse solver
    sp = SolverParams(model="auto", max_model="scaled_translation", solver="auto")
    assert [m for m, _ in candidates(sp)] == ["translation", "rigid", "scaled_translation"]
    assert SolverParams(model="scaled_translation").resolved_solver() == "iterative"

    # matching fits it: the true per-axis scale and shift back to rounding
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 200, (40, 3))
    truth = np.diag([1.01, 0.99, 1.05, 1.0])
    truth[:3, 3] = [12.0, -4.0, 3.0]
    q = p @ truth[:3, :3].T + truth[:3, 3]
    fitted = model_for(mp).fit(p, q)
    np.testing.assert_allclose(fitted, truth, atol=1e-9)

    # the global solve with it: view 1's correction maps its points onto view 0's
    res = solve([Link((0, 0), (0, 1), p, q)], SolverParams(model="scaled_translation"))
    corr = res.corrections[(0, 1)]
    moved = q @ corr[:3, :3].T + corr[:3, 3]
    assert np.abs(moved - p).max() < 1e-6, "tolerance: iterative solver convergence, 1e-6 world units"
    assert "scaled_translation" in res.transform_name

    # QC refits a pair with it, falling back to simpler registered models
    from rhapso_core.qc.matching import fit_pair_model

    np.testing.assert_allclose(fit_pair_model(p, q, "scaled_translation"), truth, atol=1e-9)


def test_an_unregistered_model_is_a_one_line_error_naming_the_known_ones():
    with pytest.raises(ValidationError, match="unknown model 'scaled_translation' .*translation, rigid, affine"):
        MatchingParams(model="scaled_translation")
    with pytest.raises(ValidationError, match="unknown model"):
        PipelineParams.model_validate({"alignment": {"rounds": ["similarity3d"]}})
    assert SolverParams(model="auto").model == "auto" and MatchingParams(regularization_model="none")


# ------------------------------------------------------------------ detector


def _log_find(values, vscale, lo, hi, core, params, two_d):
    """Scale-normalised Laplacian-of-Gaussian maxima (bright blobs), sub-voxel by a parabola per axis."""
    img = (values.astype(np.float64) * vscale - lo) / (hi - lo)
    resp = -params.sigma**2 * ndimage.gaussian_laplace(img, params.sigma)
    peak_mask = (resp == ndimage.maximum_filter(resp, size=3)) & (resp > params.threshold)
    (z0, z1), (y0, y1), (x0, x1) = core
    inside = np.zeros_like(peak_mask)
    inside[z0:z1, y0:y1, x0:x1] = True
    peak = np.argwhere(peak_mask & inside)
    peak = peak[np.all((peak > 0) & (peak < np.array(resp.shape) - 1), axis=1)]
    loc = peak.astype(np.float64)
    for ax in range(3):
        e = np.eye(3, dtype=int)[ax]
        r0, rm, rp = resp[tuple(peak.T)], resp[tuple((peak - e).T)], resp[tuple((peak + e).T)]
        den = rm - 2 * r0 + rp
        loc[:, ax] += np.where(den < 0, 0.5 * (rm - rp) / np.where(den < 0, den, -1), 0.0)
    return loc, resp[tuple(peak.T)], peak


def _log_halo(params):
    h = int(np.ceil(4.0 * params.concrete().sigma)) + 2  # scipy's Gaussian radius + the 3x3x3 test + parabola
    return (h, h, h)


@pytest.fixture
def log_detector():
    register_detector(Detector("log", _log_find, _log_halo, "Laplacian of Gaussian"))
    yield
    det_registry._DETECTORS.pop("log", None)


def _blobs():
    zz, yy, xx = np.mgrid[:40, :64, :64]
    centres = [(20.3, 18.6, 11.8), (44.7, 40.2, 27.4), (15.5, 48.1, 20.2)]  # x, y, z
    img = 100.0 + sum(1000 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2) / 8) for x, y, z in centres)
    return img.astype(np.uint16), np.array(centres)


def test_a_registered_detector_is_selected_by_detection_method_and_chunked_exactly(log_detector):
    img, centres = _blobs()
    params = DetectionParams(method="log", dsxy=1, dsz=1, sigma=2.0, threshold=0.05, min_intensity=100,
                             max_intensity=1100, dimensions="3d")
    pts = detect_dog(img, params)
    order = np.argsort(pts.loc_xyz[:, 0])
    found = pts.loc_xyz[order]
    assert len(found) == 3
    # tolerance: a parabola through sampled LoG values, 0.1 voxel for these isotropic Gaussians
    np.testing.assert_allclose(found, centres[np.argsort(centres[:, 0])], atol=0.1)
    # the chunk machinery (levels, halo, ownership) is the registry's detector-independent part
    chunked = detect_dog(img, params.model_copy(update={"chunks_per_bound": 6}))
    np.testing.assert_allclose(chunked.loc_xyz[np.argsort(chunked.loc_xyz[:, 0])], found, atol=1e-12)


def test_an_unknown_detector_is_rejected_when_parameters_are_parsed():
    with pytest.raises(ValidationError, match="unknown detector 'log' \\(expected dog\\)"):
        DetectionParams(method="log")
