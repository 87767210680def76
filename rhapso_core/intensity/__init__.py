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

from rhapso_core.intensity.model import FlatField, ViewIntensity
from rhapso_core.intensity.params import IntensityParams
from rhapso_core.intensity.solve import IntensityError, IntensitySolution, PairFit, solve_intensities

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


def __getattr__(name):
    # The dataset layer imports the pipeline; load it only when asked (keeps fusion imports light).
    if name in ("estimate_intensity", "save_intensity", "load_intensity"):
        from rhapso_core.intensity import dataset

        return getattr(dataset, name)
    raise AttributeError(name)
