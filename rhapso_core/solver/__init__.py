"""Global optimisation of view registrations from pairwise matches.

Pure computation: :func:`solve` takes :class:`Link` records (matched points in
world coordinates) and returns one world -> world correction affine per view,
to be prepended to the view's registration under
:attr:`SolveResult.transform_name`, plus a JSON-serialisable report.

Two optimisers share the same inputs and outputs:

* :func:`optimise_iterative` - mpicbg ``TileConfiguration`` semantics
  (pre-alignment, damped Gauss-Seidel fits, plateau stopping rule); every model.
* :func:`optimise_sparse` - direct sparse least squares for translation and
  affine (with BigStitcher's lambda regulariser toward rigid); scales to
  thousands of tiles.
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.solver.params import SolverParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.solver.iterative": ('optimise_iterative', 'prealign',),
    "rhapso_core.solver.records": ('Link', 'LinkResidual', 'SolveReport', 'SolveResult', 'SolverInputError', 'ViewId',),
    "rhapso_core.solver.solve": ('metadata_weak_links', 'solve',),
    "rhapso_core.solver.sparse": ('optimise_sparse',),
})

__all__ = [
    "Link",
    "LinkResidual",
    "SolveReport",
    "SolveResult",
    "SolverInputError",
    "SolverParams",
    "ViewId",
    "metadata_weak_links",
    "optimise_iterative",
    "optimise_sparse",
    "prealign",
    "solve",
]
