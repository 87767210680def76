"""Names and paths of the point store: view keys, label checks, schema constants.

One place decides how a view and a label become a path, so the zarr store, the
N5 export and the XML entries cannot disagree.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "STORE_ATTR",
    "ViewId",
    "PointStoreError",
    "PointsNotFoundError",
    "CorrespondencesNotFoundError",
    "as_view_id",
    "check_label",
    "view_key",
    "parse_view_key",
    "label_path",
]

#: Version of the zarr layout written by :class:`~rhapso_core.pointstore.PointStore`.
#: Bump when a reader of the old layout would misread the new one.
SCHEMA_VERSION = 1

#: Root attribute naming the store kind and its schema version.
STORE_ATTR = "rhapso_pointstore"

#: A view: ``(timepoint id, setup id)`` as in BigStitcher's ``ViewId``.
ViewId = tuple[int, int]

_VIEW_KEY = re.compile(r"^tpId_(-?\d+)_viewSetupId_(-?\d+)$")


class PointStoreError(ValueError):
    """Bad input or an unreadable store; the message names the view, label or path."""


class _NotFound(KeyError):
    # KeyError.__str__ quotes its argument; print the sentence as written instead.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PointsNotFoundError(_NotFound):
    """No complete interest points for a view and label."""


class CorrespondencesNotFoundError(_NotFound):
    """No complete, current correspondences for a view pair and label."""


def as_view_id(view: Any) -> ViewId:
    """Normalise a view to ``(timepoint, setup)`` ints.

    Accepts a 2-sequence of integers or an object with ``timepoint`` and ``setup``
    attributes (so a SpimData view record can be passed directly).
    """
    if hasattr(view, "timepoint") and hasattr(view, "setup"):
        t, s = view.timepoint, view.setup
    else:
        try:
            t, s = view
        except (TypeError, ValueError):
            raise PointStoreError(
                f"a view must be (timepoint, setup), got {view!r}"
            ) from None
    try:
        ti, si = int(t), int(s)
    except (TypeError, ValueError):
        raise PointStoreError(f"a view must be (timepoint, setup) integers, got {view!r}") from None
    if ti != t or si != s:
        raise PointStoreError(f"a view must be (timepoint, setup) integers, got {view!r}")
    return (ti, si)


def check_label(label: str) -> str:
    """Return ``label`` if it can be one path segment in zarr, N5 and S3, else raise."""
    if not isinstance(label, str) or not label:
        raise PointStoreError(f"label must be a non-empty string, got {label!r}")
    if "/" in label or "\\" in label or label.startswith(".") or label.startswith("__"):
        raise PointStoreError(
            f"label {label!r} cannot be a path segment (no '/', '\\', leading '.' or '__')"
        )
    if any(ord(c) < 32 for c in label):
        raise PointStoreError(f"label {label!r} contains control characters")
    return label


def view_key(view: Any) -> str:
    """BigStitcher's group name for a view: ``tpId_{t}_viewSetupId_{s}``."""
    t, s = as_view_id(view)
    return f"tpId_{t}_viewSetupId_{s}"


def parse_view_key(key: str) -> ViewId | None:
    """Inverse of :func:`view_key`; ``None`` for names that are not view groups."""
    m = _VIEW_KEY.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def label_path(view: Any, label: str) -> str:
    """Path of a view's label group, e.g. ``tpId_0_viewSetupId_3/beads``.

    This is also the text of BigStitcher's ``ViewInterestPointsFile`` element and
    the group path inside ``interestpoints.n5``.
    """
    return f"{view_key(view)}/{check_label(label)}"
