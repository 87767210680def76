"""Shared helpers for the solver tests: synthetic grids with known truth."""

import numpy as np
import pytest

from rhapso_core.solver import Link
from rhapso_core.solver.synthetic import make_grid


@pytest.fixture(scope="session")
def grids():
    """4 x 3 x 2 tiles, 50 matches per face link, 0.2 voxel noise, one grid per truth model."""
    return {kind: make_grid((4, 3, 2), kind, seed=1) for kind in ("translation", "rigid", "affine")}


def translation_of(m):
    return np.asarray(m)[:3, 3]


def replace_link(links, a, b, new_pb_offset):
    """Copy of ``links`` with the (a, b) link's pb shifted by ``new_pb_offset`` (a wrong link)."""
    out = []
    for lk in links:
        if (lk.a, lk.b) == (a, b):
            lk = Link(lk.a, lk.b, lk.pa, lk.pb + np.asarray(new_pb_offset, dtype=float), lk.weight, lk.label)
        out.append(lk)
    return out
