"""A command's start-up without the cyclic garbage collector.

Importing Prefect, pydantic, numba, zarr and the project makes ~200,000 objects that live as long
as the process; while they are made, the collector runs ~525 times (4 full passes over all of
them): 0.4-0.6 s of a ``rhapso stitch``'s 3-5 s start on this machine (``docs/benchmarks.md``,
"The command's own start"). :func:`pause` (from ``cli()``, before anything is imported) turns it
off; :func:`resume`, once the command has imported what it runs and before its first flow run,
moves everything alive into the collector's permanent generation (``gc.freeze``: later full
passes no longer walk it) and turns it back on, so the work runs with the collector as before.
Reference counting frees everything else as usual throughout; what the pause leaves behind is the
reference cycles that became garbage during the start (about 7,000 objects, measured), which
stay frozen with the rest.
"""

from __future__ import annotations

import gc

_paused_from: bool | None = None  # the collector's state when paused; None while not paused


def pause() -> None:
    global _paused_from
    if _paused_from is None:
        _paused_from = gc.isenabled()
        gc.disable()


def resume() -> None:
    """End the pause (no-op when not paused): freeze what the start made, collector as before."""
    global _paused_from
    if _paused_from is None:
        return
    gc.freeze()
    if _paused_from:
        gc.enable()
    _paused_from = None
