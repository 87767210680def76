"""Intensity correction building blocks: generator gains, maps, storage, the global fit."""

from __future__ import annotations

import numpy as np
import pytest

from rhapso_core.intensity import FlatField, IntensityParams, ViewIntensity, solve_intensities
from rhapso_core.intensity.model import flatfield_terms
from rhapso_core.intensity.sampling import PairSamples, SampledView
from rhapso_core.intensity.store import read_coefficients, write_coefficients
from rhapso_core.intensity.xml import read_intensity_adjustments, with_intensity_adjustments
from rhapso_core.synthetic import SyntheticParams
from rhapso_core.synthetic.geometry import tile_grid
from rhapso_core.synthetic.intensity import view_gain, vignetting_profile
from rhapso_core.synthetic.multiview import acquire_view, views_of
from rhapso_core.synthetic.specimen import make_specimen


def test_generator_gain_and_vignetting_scale_the_signal_only():
    """Noise-free: (counts - offset) with gain and vignetting = g * profile * (counts - offset) without
    (up to the uint16 rounding, 0.5 count)."""
    base = dict(grid=(2, 1, 1), tile_size_xyz=(40, 32, 8), voxel_size_xyz=(1.0, 1.0, 2.0), noise=False, seed=3,
                jitter_voxels=(1.0, 1.0, 0.5))
    plain, lit = SyntheticParams(**base), SyntheticParams(**base, tile_gain_spread=0.15, vignetting=0.15)
    spec = make_specimen(plain)
    for vp, vl in zip(views_of(tile_grid(plain), plain), views_of(tile_grid(lit), lit)):
        a = acquire_view(spec, vp, plain).astype(float) - plain.camera_offset
        b = acquire_view(spec, vl, lit).astype(float) - lit.camera_offset
        g = view_gain(lit.seed, lit.tile_gain_spread, vl.timepoint, vl.setup)
        assert 0.85 <= g <= 1.15 and g != 1.0
        expect = g * vignetting_profile(32, 40, 0.15)[None] * a
        assert np.max(np.abs(b - expect)) <= 0.5 + 1e-3 * expect.max()
    prof = vignetting_profile(33, 33, 0.15)
    assert prof[16, 16] == pytest.approx(1.0) and prof[16, 0] == pytest.approx(0.85) and prof[0, 0] == pytest.approx(0.7)


def test_map_box_agrees_with_map_points():
    rng = np.random.default_rng(0)
    ff = FlatField(2, (-0.1, 0.02, -0.12), 90.0)
    m = ViewIntensity((40, 30, 10), 1 + 0.1 * rng.standard_normal((2, 3, 4)), 5 * rng.standard_normal((2, 3, 4)), ff)
    src = rng.uniform(100, 1000, (5, 15, 20)).astype(np.float32)
    start, f = (1, 3, 4), (2.0, 2.0, 2.0)  # a level-1 box
    out = m.map_box(src, start, f)
    z, y, x = np.meshgrid(*[f[k] * (start[k] + np.arange(src.shape[k])) + (f[k] - 1) / 2 for k in range(3)], indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    np.testing.assert_allclose(out.ravel(), m.map_points(src.ravel(), pts), rtol=1e-5)
    assert ViewIntensity.affine((4, 4, 4), 1.0, 0.0).is_identity()


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("factors", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0)])
def test_map_box_gives_a_voxel_the_same_bits_from_any_box(flat, factors):
    # Fusion maps one box for several blocks, and block by block before: the bytes must not
    # depend on the box (tolerance: none), whatever its shape, on level 0 and level 1.
    rng = np.random.default_rng(3)
    ff = FlatField(2, (-0.1, 0.02, -0.12), 90.0) if flat else None
    m = ViewIntensity((120, 90, 40), 1 + 0.1 * rng.standard_normal((3, 2, 4)), 5 * rng.standard_normal((3, 2, 4)), ff)
    shape = tuple(int(n // f) for n, f in zip((40, 90, 120), factors))
    src = rng.integers(0, 4000, shape).astype(np.uint16)
    whole = m.map_box(src, (0, 0, 0), factors)
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        assert np.array_equal(m.map_box(src[box], lo, factors).view(np.uint32), whole[box].view(np.uint32)), box


def test_map_box_holds_its_result_and_a_few_planes():
    # The memory fusion's cost model counts per source voxel: the float32 result (4 bytes)
    # and planes; the whole-box float64 fields before took 16-20 bytes per voxel.
    import tracemalloc

    rng = np.random.default_rng(4)
    m = ViewIntensity((300, 200, 60), 1 + 0.1 * rng.standard_normal((2, 3, 4)), 5 * rng.standard_normal((2, 3, 4)),
                      FlatField(2, (-0.1, 0.02, -0.12), 90.0))
    src = rng.integers(0, 4000, (60, 200, 300)).astype(np.uint16)
    tracemalloc.start()
    try:
        m.map_box(src, (0, 0, 0), (1.0, 1.0, 1.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 6.0 * src.size, peak / src.size  # measured 5.1 (planes of 60 k voxels; 4 + 1.1)


def test_one_cell_maps_exactly_a_times_x_plus_b():
    src = np.random.default_rng(5).integers(0, 65535, (7, 9, 11)).astype(np.uint16)
    m = ViewIntensity.affine((11, 9, 7), 1.37, -12.5)
    want = np.float32(1.37) * src.astype(np.float32) + np.float32(-12.5)
    assert np.array_equal(m.map_box(src, (0, 0, 0), (1.0, 1.0, 1.0)), want)


def _synthetic_samples(gains, offsets, n=3000, seed=0):
    """Two rows of three views; view k sees value g_k * s + o_k of a shared specimen value s."""
    rng = np.random.default_rng(seed)
    views = [SampledView((0, k), None, np.eye(4), (100, 100, 10), (0, 0, 0), 0) for k in range(6)]
    pairs = [(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)]
    samples = []
    for a, b in pairs:
        s = rng.uniform(50, 2000, n)
        pts = rng.uniform(0, 99, (n, 3))
        samples.append(PairSamples((0, a), (0, b), pts, pts, gains[a] * s + offsets[a], gains[b] * s + offsets[b]))
    return views, samples


def test_global_fit_recovers_relative_gains():
    """Exact samples: every mapped view equals one common linear function of the specimen
    (a_k g_k equal to 1e-3 relative; the gauge keeps the mean brightness)."""
    gains = np.array([1.0, 0.87, 1.12, 0.9, 1.15, 0.95])
    offsets = np.array([0.0, 5.0, -3.0, 2.0, 0.0, 1.0])
    views, samples = _synthetic_samples(gains, offsets)
    sol = solve_intensities(views, samples, IntensityParams(flatfield=False, offsets=True, regularisation=1e-4))
    eff = np.array([sol.maps[(0, k)].a.ravel()[0] * gains[k] for k in range(6)])
    assert np.ptp(eff) / eff.mean() < 1e-3
    for pf in sol.pairs:
        assert pf.rms_after < 0.01 * pf.rms_before + 1e-6
    # A fixed reference view stays at identity.
    sol = solve_intensities(views, samples, IntensityParams(flatfield=False, offsets=True, reference=2, regularisation=1e-4))
    assert sol.maps[(0, 2)].a.ravel()[0] == pytest.approx(1.0, abs=1e-3)
    assert sol.maps[(0, 0)].a.ravel()[0] == pytest.approx(gains[2] / gains[0], rel=1e-3)


def test_grid_model_fits_a_gain_ramp_inside_views():
    """A gain that varies along x inside every view is followed by a 4 x 1 x 1 grid of cells."""
    rng = np.random.default_rng(1)
    views = [SampledView((0, k), None, np.eye(4), (100, 100, 10), (0, 0, 0), 0) for k in range(2)]
    n = 4000
    s = rng.uniform(100, 1000, n)
    pa = rng.uniform(0, 99, (n, 3))
    pb = pa.copy()
    pb[:, 0] = 99 - pa[:, 0]  # b sees the same point mirrored along x
    ramp = lambda p: 1.0 + 0.2 * p[:, 0] / 99  # noqa: E731  # view 0's gain grows along x, view 1's is 1
    samples = [PairSamples((0, 0), (0, 1), pa, pb, ramp(pa) * s, s)]
    p = IntensityParams(flatfield=False, model="grid", cells=(4, 1, 1), regularisation=1e-4, smoothness=1e-4,
                        reference=1)
    sol = solve_intensities(views, samples, p)
    a0 = sol.maps[(0, 0)].a.ravel()
    assert np.all(np.diff(a0) < 0), "view 0's map falls where its gain rises"
    centres = (np.arange(4) + 0.5) * 25.0 - 0.5
    np.testing.assert_allclose(a0, 1.0 / (1.0 + 0.2 * centres / 99), rtol=0.01)
    y0 = sol.maps[(0, 0)].map_points(ramp(pa) * s, pa)
    y1 = sol.maps[(0, 1)].map_points(s, pb)
    assert np.sqrt(np.mean(((y0 - y1) / y1) ** 2)) < 0.01


def test_flatfield_terms_are_centrally_symmetric():
    assert flatfield_terms(2) == ((2, 0), (1, 1), (0, 2))
    assert all((i + j) % 2 == 0 for i, j in flatfield_terms(4))


def test_intensity_adjustments_round_trip(tmp_path):
    from pathlib import Path

    from rhapso_core.spimdata import load_xml, save_xml

    fixtures = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "xml").glob("**/*.xml"))
    assert len(fixtures) >= 6, "tests/fixtures/xml holds the real XMLs"
    for f in fixtures[:6]:
        try:
            sd = load_xml(str(f))
        except Exception:
            continue
        v = sd.views()[0]
        sd2 = with_intensity_adjustments(sd, {v: (1.25, -3.5)})
        save_xml(sd2, str(tmp_path / "x.xml"))
        back = load_xml(str(tmp_path / "x.xml"))
        assert read_intensity_adjustments(back) == {v: (1.25, -3.5)}, f.name
        # Everything else is untouched, and a second save writes the same bytes.
        assert back.registrations == sd.registrations and back.setups == sd.setups
        save_xml(back, str(tmp_path / "y.xml"))
        assert (tmp_path / "x.xml").read_bytes() == (tmp_path / "y.xml").read_bytes()


def test_coefficients_container_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    ff = FlatField(2, (-0.1, 0.0, -0.1), 100.0)
    maps = {(0, 3): ViewIntensity((64, 48, 8), rng.uniform(0.8, 1.2, (1, 2, 4)), rng.normal(0, 5, (1, 2, 4)), ff),
            (1, 0): ViewIntensity.affine((64, 48, 8), 0.9, 2.0)}
    uri = str(tmp_path / "solved-intensity.n5")
    write_coefficients(uri, maps)
    import json

    attrs = json.loads((tmp_path / "solved-intensity.n5" / "setup3" / "timepoint0" / "intensity" / "attributes.json").read_text())
    assert attrs["dimensions"] == [4, 2, 1, 2] and attrs["blockSize"] == [4, 2, 1, 1] and attrs["dataType"] == "float64"
    back = read_coefficients(uri, [(0, 3), (1, 0), (0, 9)], {(0, 3): (64, 48, 8), (1, 0): (64, 48, 8), (0, 9): (1, 1, 1)})
    assert set(back) == {(0, 3), (1, 0)}
    for k in maps:
        np.testing.assert_array_equal(back[k].a, maps[k].a)
        np.testing.assert_array_equal(back[k].b, maps[k].b)
        assert back[k].flatfield == maps[k].flatfield
