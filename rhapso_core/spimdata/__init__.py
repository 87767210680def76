"""BigStitcher / BigDataViewer SpimData XML: the one XML model every stage uses.

Conventions
-----------
* A view is ``ViewId = (timepoint, setup)``.
* Transforms follow :mod:`rhapso_core.transforms`: each ``ViewTransform.affine`` is a
  read-only 4x4 float64 on homogeneous ``(x, y, z, 1)`` (XML: 12 row-major numbers).
  A view's registration lists ``[T1, ..., Tn]`` in XML order and
  ``SpimData.view_to_world(view) = T1 @ T2 @ ... @ Tn`` maps view voxels to world:
  the first listed transform is applied last, so a solve *prepends* its correction
  (:meth:`SpimData.with_prepended_transform`).
* Sizes and voxel sizes are x, y, z (image arrays elsewhere are z, y, x).
* ``SpimData.base_path`` is ``<BasePath>`` resolved against the XML's folder;
  image-loader paths of ``type="relative"`` are relative to it. URIs keep their
  scheme (``s3://``).
* The model is immutable; ``with_*`` methods return new objects.
* Load -> save keeps everything not modelled (``BoundingBoxes``, ``StitchingResults``,
  unknown elements and attributes) in its original position, and keeps the original
  text of unchanged numbers (see :mod:`rhapso_core.spimdata.preserve`).

Example
-------
>>> from rhapso_core.spimdata import load_xml, save_xml      # doctest: +SKIP
>>> sd = load_xml("s3://bucket/dataset.xml")                  # doctest: +SKIP
>>> loc = sd.image_location(sd.views()[0])                    # doctest: +SKIP
>>> sd2 = sd.with_prepended_transform(sd.views(), "solve", correction)  # doctest: +SKIP
>>> save_xml(sd2, "s3://bucket/dataset_aligned.xml")         # doctest: +SKIP
"""

from .build import STANDARD_ATTRIBUTES, make_spimdata
from .errors import SpimDataError
from .io import from_xml_bytes, load_xml, save_xml, to_xml_bytes
from .loaders import (
    FileMapImageLoader,
    FileMapping,
    Hdf5ImageLoader,
    Hdf5Partition,
    ImageLoader,
    ImageLocation,
    N5ImageLoader,
    SetupIdDefinition,
    SplitImageLoader,
    FlatFieldFiles,
    FlatFieldImageLoader,
    UnknownImageLoader,
    ZarrImageLoader,
    ZGroup,
)
from .model import (
    AttributeGroup,
    Entity,
    InterestPointsFile,
    SpimData,
    Timepoints,
    ViewId,
    ViewSetup,
    ViewTransform,
    parse_integer_pattern,
)
from .preserve import Preserved, RawElement, format_double

__all__ = [
    "ViewId",
    "SpimData",
    "SpimDataError",
    "load_xml",
    "save_xml",
    "from_xml_bytes",
    "to_xml_bytes",
    "make_spimdata",
    "STANDARD_ATTRIBUTES",
    "ViewTransform",
    "ViewSetup",
    "Entity",
    "AttributeGroup",
    "Timepoints",
    "InterestPointsFile",
    "parse_integer_pattern",
    "ImageLoader",
    "ImageLocation",
    "ZarrImageLoader",
    "ZGroup",
    "N5ImageLoader",
    "Hdf5ImageLoader",
    "Hdf5Partition",
    "FileMapImageLoader",
    "FileMapping",
    "SplitImageLoader",
    "FlatFieldFiles",
    "FlatFieldImageLoader",
    "SetupIdDefinition",
    "UnknownImageLoader",
    "Preserved",
    "RawElement",
    "format_double",
]
