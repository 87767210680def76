"""Parameter validation and input errors name the offending parameter."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from rhapso_core.detection import DetectionError, DetectionParams, detect_dog, detect_view
from rhapso_core.image_source import ArraySource


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(sigma=0.4), "sigma"),
        (dict(threshold=0), "threshold"),
        (dict(dsxy=0), "dsxy"),
        (dict(median_filter=-1), "median_filter"),
        (dict(peak_type="maxima"), "peak_type"),
        (dict(chunks_per_bound=0), "chunks_per_bound"),
        (dict(min_intensity=5, max_intensity=5), "max_intensity"),
        (dict(sigmaa=2.0), "sigmaa"),
    ],
)
def test_bad_values_name_the_parameter(kw, name):
    with pytest.raises(pydantic.ValidationError, match=name):
        DetectionParams(**kw)


def test_defaults():
    # Data-dependent parameters default to auto (resolved per dataset by rhapso_core.autoparams);
    # with no dataset at hand they take the fixed fallbacks.
    p = DetectionParams()
    assert (p.dsxy, p.dsz, p.sigma, p.threshold, p.combine_distance) == ("auto", "auto", "auto", "auto", 0.5)
    assert (p.label, p.peak_type, p.max_spots, p.chunks_per_bound) == ("beads", "max", 0, 1)
    assert p.factors_zyx() == (1, 2, 2)
    c = p.concrete()
    assert (c.dsxy, c.dsz, c.sigma, c.threshold, c.min_intensity) == (2, 1, 1.8, 0.008, None)
    assert DetectionParams(dsxy=1, sigma="auto").concrete().dsxy == 1
    with pytest.raises(pydantic.ValidationError, match="dsxy"):
        DetectionParams(dsxy="fine")


def test_input_errors():
    with pytest.raises(DetectionError, match="3D"):
        detect_dog(np.zeros((10, 10)))
    src = ArraySource([np.zeros((8, 8, 8), np.uint16)])
    with pytest.raises(DetectionError, match="region_xyz"):
        detect_view(src, DetectionParams(dsxy=1), region_xyz=[[0, 0], [1, 1]])


def test_constant_image_gives_no_points():
    assert len(detect_dog(np.full((10, 20, 20), 7, np.uint16), DetectionParams(dsxy=1))) == 0


def test_input_not_modified():
    a = np.random.default_rng(0).integers(0, 1000, (12, 30, 30)).astype(np.uint16)
    b = a.copy()
    detect_dog(a, DetectionParams(dsxy=1, median_filter=2))
    np.testing.assert_array_equal(a, b)
    f = a.astype(np.float32)
    g = f.copy()
    detect_dog(f, DetectionParams(dsxy=1))
    np.testing.assert_array_equal(f, g)
