"""borrowed(): a view of the same memory, shape and strides, without numba's owner record."""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from rhapso_core.fusion.borrowed_arrays import borrowed


@numba.njit(cache=False)
def _fill_through_view(a, value):
    b = borrowed(a)
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            b[i, j] = value * (i * b.shape[1] + j)
    return b.shape[0], b.shape[1], b.strides[0], b.strides[1]


def test_writes_through_a_borrowed_view_reach_the_array_with_its_strides():
    base = np.zeros((6, 10), np.float64)
    view = base[1:5, ::3]  # not contiguous: the view keeps both strides
    shape0, shape1, s0, s1 = _fill_through_view(view, 2.0)
    assert (shape0, shape1) == view.shape and (s0, s1) == view.strides
    np.testing.assert_array_equal(view, 2.0 * np.arange(view.size).reshape(view.shape))
    untouched = np.ones(base.shape, bool)
    untouched[1:5, ::3] = False
    assert not base[untouched].any()


@numba.njit(cache=False)
def _meminfo_is_null(a):
    return _is_null(borrowed(a))


@intrinsic
def _is_null(typingctx, arr):
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        return cgutils.is_null(builder, ary.meminfo)
    return types.boolean(arr), codegen


def test_a_borrowed_view_has_no_owner_record():
    # What makes it worth having: numba's reference counting returns at once on a null record.
    assert _meminfo_is_null(np.zeros(3))
