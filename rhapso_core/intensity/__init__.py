"""Intensity correction: per-view intensity maps and per-channel flat fields.

Tiles differ in brightness (laser power, exposure, bleaching) and each is dimmed towards
its edges (vignetting); fused, that shows as seams and checkerboards. This package

* estimates a flat field per channel from the content of all its tiles
  (:mod:`.flatfield`);
* samples what overlapping views see at the same world points under the current
  registrations (:mod:`.sampling`) and fits, globally, one linear map per view or per
  cell of a coarse grid in each view (:mod:`.solve`, BigStitcher-Spark's model);
* stores the maps where BigStitcher-Spark stores its coefficients (:mod:`.store`) and,
  one model per view, in BigStitcher's ``<IntensityAdjustments>`` (:mod:`.xml`);
* applies them to a view's pixels at fusion (:meth:`.model.ViewIntensity.map_box`).

Example
-------
>>> from rhapso_core.intensity import IntensityParams, estimate_intensity    # doctest: +SKIP
>>> sol = estimate_intensity(sd, IntensityParams(dark_level=100))           # doctest: +SKIP
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.intensity.params import IntensityParams

# The solver needs scipy and the dataset layer the pipeline: loaded only when asked, so that
# validating a run's parameters (and importing fusion) stays light.
__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.intensity.model": ("FlatField", "ViewIntensity"),
    "rhapso_core.intensity.solve": ("IntensityError", "IntensitySolution", "PairFit", "solve_intensities"),
    "rhapso_core.intensity.dataset": ("estimate_intensity", "save_intensity", "load_intensity"),
})

__all__ = [
    "FlatField",
    "ViewIntensity",
    "IntensityParams",
    "IntensityError",
    "IntensitySolution",
    "PairFit",
    "solve_intensities",
    "estimate_intensity",
    "save_intensity",
    "load_intensity",
]
