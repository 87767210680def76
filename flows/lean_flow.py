"""Prefect flows that cost less to define and to start, and behave as Prefect's.

Two costs of Prefect's ``Flow`` that a run does not need (``docs/benchmarks.md``,
"Per-flow-run overhead"):

* **The parameter schema.** ``Flow``'s constructor builds the JSON schema of its function's
  parameters (``Flow.parameters``): for the project's flows, whose parameters include the
  nested ``PipelineParams``, 0.03-0.19 s a flow on a quiet machine, 0.6 s for the nine flows
  that ``rhapso stitch`` imports, and again for every ``with_options`` copy a run makes of a
  stage flow. A flow run does not read it; a deployment does, and builds its own from the
  function (``prefect deploy`` and ``Flow.to_deployment`` call ``parameter_schema(flow)``), so
  deployments and the UI's parameter form are unchanged. Here ``Flow.parameters`` is the same
  schema, built on first access. This needs a hook in Prefect's constructor (its module's
  ``parameter_schema``), which answers as before for every other flow; without that hook
  (another Prefect) the flows build it eagerly, as before.
* **FastAPI, for the run's parameters.** Each flow run stores its parameters in JSON form,
  which Prefect's ``serialize_parameters`` makes with FastAPI's ``jsonable_encoder``: importing
  FastAPI is 0.2 s of a command's first flow run, and nothing else in the command needs it.
  For the values the project's flows take (strings, numbers, booleans, None, lists of them,
  pydantic models) :meth:`LeanFlow.serialize_parameters` gives the same JSON without FastAPI
  (``tests/flows/test_lean_flow.py`` compares the two); any other value goes to Prefect's.

A top-level run of such a flow also ends only once the artifacts it and its subflows
queued are written (:mod:`flows.artifact_writer`: artifacts are written off the flow's thread).

Use :func:`flow` as ``prefect.flow``.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
from typing import Any

import prefect.flows as _prefect_flows
from prefect.flows import Flow
from prefect.utilities.callables import parameter_schema as _build_schema
from pydantic import BaseModel

from flows import artifact_writer, heartbeats

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


class LeanFlow(Flow):
    """A Prefect ``Flow`` whose ``parameters`` (its parameter schema) is built on first access and
    whose runs store their parameters without FastAPI (see the module's docstring)."""

    def __init__(self, fn, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("version") is None and inspect.isfunction(fn):
            kwargs["version"] = _version_of(fn)  # Prefect's default, from the flow's file (not this wrapper's)
        fn = _flushing_artifacts(fn)
        with _Deferring(fn):
            super().__init__(fn, *args, **kwargs)
        _defer(self)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found the ordinary way: ``parameters`` until it is built.
        if name == "parameters":
            schema = self.__dict__["parameters"] = _build_schema(self.fn)
            return schema
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Prefect's ``Flow.serialize_parameters`` (the parameters a flow run stores), without
        importing FastAPI for the plain values and pydantic models the project's flows take."""
        if self.ismethod or self.isclassmethod:
            return super().serialize_parameters(parameters)
        out: dict[str, Any] = {}
        for key, value in parameters.items():
            plain = _plain_json(value)
            out[key] = plain if plain is not _OTHER else super().serialize_parameters({key: value})[key]
        return out

    def with_options(self, *args: Any, **kwargs: Any) -> LeanFlow:
        """Prefect's ``with_options`` (a new ``Flow`` with these options), as a lazy-schema flow."""
        with _Deferring(self.fn):
            new = super().with_options(*args, **kwargs)
        if type(new) is Flow:  # Prefect constructs its own class
            new.__class__ = type(self)
        _defer(new)
        return new


def _version_of(fn) -> str | None:
    """Prefect's default flow version: the hash of the file that defines ``fn``."""
    from prefect.utilities.hashing import file_hash

    try:
        path = inspect.getsourcefile(inspect.unwrap(fn))
        return file_hash(path) if path else None
    except (TypeError, OSError):
        return None


def _top_level_run() -> bool:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is None or ctx.flow_run is None or ctx.flow_run.parent_task_run_id is None


def _flushing_artifacts(fn):
    """``fn``, which, run as a top-level flow run (no parent), waits before it returns for the artifacts
    that its run and subflows queued (:mod:`flows.artifact_writer`): inside the function, so that both a
    call and a run that Prefect's runner starts (a deployment) write them while the run is still running.

    The wrapper is made with ``fn``'s module globals: Prefect validates a run's parameters against the
    annotations, which name types of that module (``PipelineParams``), resolved in the function's globals.
    """
    if getattr(fn, "_rhapso_flushes", False) or inspect.iscoroutinefunction(fn) or not inspect.isfunction(fn):
        return fn
    top_level, flush = _top_level_run, artifact_writer.flush  # closure cells: the wrapper reads no globals

    def run(*args: Any, **kwargs: Any) -> Any:
        top = top_level()
        try:
            return fn(*args, **kwargs)
        finally:
            if top:
                flush()

    wrapper = types.FunctionType(run.__code__, fn.__globals__, fn.__name__, None, run.__closure__)
    functools.update_wrapper(wrapper, fn)
    wrapper._rhapso_flushes = True  # type: ignore[attr-defined]
    return wrapper


_OTHER = object()
_SCALARS = (str, int, float, bool, type(None))


def _plain_json(value: Any) -> Any:
    """What FastAPI's ``jsonable_encoder`` (with its defaults, as Prefect calls it) gives for
    ``value``, or ``_OTHER`` for a value this does not cover."""
    if type(value) in _SCALARS:
        return value
    if type(value) in (list, tuple) and all(type(v) in _SCALARS for v in value):
        return list(value)
    if isinstance(value, BaseModel):
        try:
            return _jsonable(value.model_dump(mode="json", by_alias=True))
        except (TypeError, ValueError, RecursionError):
            return _OTHER  # Prefect's own path decides (it stores a placeholder)
    return _OTHER


def _jsonable(data: Any) -> Any:
    """``jsonable_encoder``'s pass over a model's JSON-mode dump: the same data, less the
    dictionary keys that start with ``_sa`` (its ``sqlalchemy_safe``)."""
    if isinstance(data, dict):
        return {k: _jsonable(v) for k, v in data.items() if not (isinstance(k, str) and k.startswith("_sa"))}
    if isinstance(data, list):
        return [_jsonable(v) for v in data]
    return data


def _defer(f: Flow) -> None:
    if f.__dict__.get("parameters") is _DEFERRED:
        del f.__dict__["parameters"]  # built by __getattr__ when read


def flow(fn=None, /, **options: Any):
    """``prefect.flow``, making :class:`LeanFlow` objects (the same options).

    A process defines the project's flows before it runs one (the command line imports their
    modules, a deployment loads its entrypoint's), so this is also where the process's flow runs
    are made to end without waiting for their heartbeat thread (:mod:`flows.heartbeats`)."""
    heartbeats.install()
    if fn is None:
        return lambda f: LeanFlow(f, **options)
    return LeanFlow(fn, **options)
