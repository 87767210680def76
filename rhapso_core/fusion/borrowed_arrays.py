"""Array views without a reference count, for numba loops that pass arrays around per row.

numba counts references to every array it passes to a function that is not inlined, or
slices: two atomic updates (``lock inc`` / ``lock dec``) each time. In the fusion kernel,
whose row functions take a dozen arrays and run a few hundred voxels per call, these
updates cost 5-7 % of the sampling time (the replay of ``bench/bench_fusion_kernel.py``
with and without borrowing; ``perf`` on the JIT code had put them at 21 % before the kernel
passed its constants as tuples and stopped slicing in its run loops). A *borrowed* view has no owner record (null ``meminfo``),
so numba skips the update (its incref and decref return at once on null).

Only for arrays that outlive the borrowed view: in practice a function's own arguments
(the caller holds them for the whole call). numba frees a local array after its last use,
so borrowing a local one could leave the view pointing at freed memory.
"""

from __future__ import annotations

from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["borrowed"]


@intrinsic
def borrowed(typingctx, arr):
    """``arr`` (any numba array type) as a view of the same data, shape and strides with no
    owner record. See the module docstring for when this is safe."""

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, value=args[0])
        out = context.make_array(sig.return_type)(context, builder)
        for field in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(out, field, getattr(src, field))
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen
