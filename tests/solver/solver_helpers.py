"""Helpers of the solver tests (a uniquely named module: `import conftest` is ambiguous)."""

import numpy as np

from rhapso_core.solver import Link


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
