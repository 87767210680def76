"""Prefect flows whose parameter schema is built when first read, not when they are defined.

Prefect's ``Flow`` builds the JSON schema of its function's parameters in its constructor
(``Flow.parameters``): for the project's flows, whose parameters include the nested
``PipelineParams``, 0.03-0.19 s a flow on a quiet machine, 0.6 s for the nine flows that
``rhapso stitch`` imports, and again for every ``with_options`` copy a run makes of a stage
flow (``docs/benchmarks.md``, "Per-flow-run overhead"). A flow run does not read the schema;
a deployment does, and builds its own from the function (``prefect deploy`` and
``Flow.to_deployment`` call ``parameter_schema(flow)``), so deployments and the UI's parameter
form are unchanged. Here ``Flow.parameters`` is the same schema, built on first access.

Use :func:`flow` as ``prefect.flow``. It needs a hook in Prefect's constructor (its module's
``parameter_schema``), which answers as before for every other flow; without that hook (another
Prefect) the flows are ordinary ones.
"""

from __future__ import annotations

import threading
from typing import Any

import prefect.flows as _prefect_flows
from prefect.flows import Flow
from prefect.utilities.callables import parameter_schema as _build_schema

from flows import heartbeats

_DEFERRED = object()
_deferring = threading.local()  # the functions whose Flow this thread is constructing lazily


def _schema_unless_deferred(fn):
    """Stands in for ``prefect.flows.parameter_schema`` (the name ``Flow.__init__`` calls)."""
    if fn in getattr(_deferring, "fns", ()):
        return _DEFERRED
    return _build_schema(fn)


_HOOKED = getattr(_prefect_flows, "parameter_schema", None) is _build_schema
if _HOOKED:
    _prefect_flows.parameter_schema = _schema_unless_deferred
else:
    _HOOKED = getattr(_prefect_flows, "parameter_schema", None) is _schema_unless_deferred  # a reload


class _Deferring:
    def __init__(self, fn) -> None:
        self.fn = fn

    def __enter__(self) -> None:
        _deferring.fns = (*getattr(_deferring, "fns", ()), self.fn)

    def __exit__(self, *exc) -> None:
        fns = list(_deferring.fns)
        fns.remove(self.fn)
        _deferring.fns = tuple(fns)


class LazySchemaFlow(Flow):
    """A Prefect ``Flow`` whose ``parameters`` (its parameter schema) is built on first access."""

    def __init__(self, fn, *args: Any, **kwargs: Any) -> None:
        with _Deferring(fn):
            super().__init__(fn, *args, **kwargs)
        _defer(self)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found the ordinary way: ``parameters`` until it is built.
        if name == "parameters":
            schema = self.__dict__["parameters"] = _build_schema(self.fn)
            return schema
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def with_options(self, *args: Any, **kwargs: Any) -> LazySchemaFlow:
        """Prefect's ``with_options`` (a new ``Flow`` with these options), as a lazy-schema flow."""
        with _Deferring(self.fn):
            new = super().with_options(*args, **kwargs)
        if type(new) is Flow:  # Prefect constructs its own class
            new.__class__ = type(self)
        _defer(new)
        return new


def _defer(f: Flow) -> None:
    if f.__dict__.get("parameters") is _DEFERRED:
        del f.__dict__["parameters"]  # built by __getattr__ when read


def flow(fn=None, /, **options: Any):
    """``prefect.flow``, making :class:`LazySchemaFlow` objects (the same options).

    A process defines the project's flows before it runs one (the command line imports their
    modules, a deployment loads its entrypoint's), so this is also where the process's flow runs
    are made to end without waiting for their heartbeat thread (:mod:`flows.heartbeats`)."""
    heartbeats.install()
    if fn is None:
        return lambda f: LazySchemaFlow(f, **options)
    return LazySchemaFlow(fn, **options)
