"""The one rule every command and flow enforces before it writes: an output never touches an input.

Inputs are everything a dataset XML reads: the XML itself, every view's image
(the tile's zarr group, the N5 / HDF5 container, the TIFF files) and the
interest-point store its ``<ViewInterestPointsFile>`` entries point at. Each path
is resolved before comparison (``os.path.realpath`` for local paths, so a symlink
or ``..`` cannot disguise an input; ``.``/``..`` segments normalised for URIs).
An output is refused when it *is* an input, lies *inside* one (a file written into
a tile's zarr) or *contains* one (a folder whose replacement would delete a tile);
``--overwrite`` does not change this.

Writing *beside* an input (an aligned XML in the dataset's folder) is allowed:
the rule is about the paths a run writes, replaces or deletes, not their folders.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from rhapso_core.spimdata import uris


class InputOverwriteError(ValueError):
    """An output path would write over, into or around an input (the message names both)."""


@dataclass(frozen=True)
class InputPath:
    """One resolved input path and what it is (for the message)."""

    path: str
    what: str


def canonical_path(uri: str) -> str:
    """A comparable form of ``uri``: the real local path (symlinks and ``..`` resolved, the
    part that does not exist yet kept as written), or the normalised URI."""
    uri = str(uri)
    if uris.is_url(uri):
        scheme = uri.partition("://")[0]
        if scheme == "file":
            return canonical_path(uri.partition("://")[2])
        return uris.normalize(uri).rstrip("/")
    return os.path.realpath(os.path.abspath(os.path.expanduser(uri)))


def _sep(path: str) -> str:
    return "/" if uris.is_url(path) else os.sep


def _inside(inner: str, outer: str) -> bool:
    """``inner`` is ``outer`` or below it (both resolved)."""
    if inner == outer:
        return True
    base = outer if outer.endswith(_sep(outer)) else outer + _sep(outer)
    return inner.startswith(base)


def dataset_inputs(xml_uri: str, storage_options: dict | None = None, sd=None) -> list[InputPath]:
    """Every path the dataset at ``xml_uri`` reads, resolved: the XML, its images, its point store.

    The XML must parse (callers run :func:`~rhapso_core.pipeline.preflight.check_dataset`
    or load it first; a parse error propagates as the loader's one-line error).
    """
    from rhapso_core.pipeline.dataset import load_dataset

    sd = sd if sd is not None else load_dataset(xml_uri, storage_options)
    out = [InputPath(canonical_path(xml_uri), "the input XML")]
    seen = {out[0].path}

    def add(path: str, what: str) -> None:
        p = canonical_path(path)
        if p not in seen:
            seen.add(p)
            out.append(InputPath(p, what))

    for v in sd.views():
        try:
            loc = sd.image_location(v)
        except Exception:  # an unlocatable view is reported by the preflight, not here
            continue
        what = f"the image of view (timepoint {v[0]}, setup {v[1]})"
        while True:
            if loc.flatfield is not None:  # a flat-field loader's bright and dark images are inputs too
                for kind, f in (("bright", loc.flatfield.bright), ("dark", loc.flatfield.dark)):
                    if f is not None:
                        add(f, f"the flat-field {kind} image of view (timepoint {v[0]}, setup {v[1]})")
            if loc.inner is None:
                break
            loc = loc.inner  # a split view reads its parent's container
        if loc.files:
            for f in loc.files:
                add(f, what)
        else:
            # The tile's own group (a zarr root may be a folder shared with the XML; the
            # group is what holds the view's pixels). N5 / HDF5: the whole container.
            add(loc.dataset_uri if loc.kind == "ome-zarr" else loc.uri, what)
    if sd.interest_points:
        add(uris.join(sd.base_path, "interestpoints.n5"), "the interest points the input XML lists")
    # Fusion applies the intensity coefficients stored beside the XML, when there are any: then
    # they are part of the dataset.
    from rhapso_core.intensity.store import default_container
    from rhapso_core.io import fs_for

    container = default_container(xml_uri)
    fs, path = fs_for(container, storage_options)
    if fs.exists(path):
        add(container, "the intensity coefficients of the input XML")
    return out


def check_outputs(outputs: Iterable[tuple[str, str]], inputs: Iterable[InputPath]) -> None:
    """Refuse the first ``(path, what)`` output that is, is inside, or contains an input.

    Raises
    ------
    InputOverwriteError
        One line naming the output, the option it came from and the input it would touch.
    """
    inputs = list(inputs)
    for out, what in outputs:
        if not out:
            continue
        r = canonical_path(out)
        for inp in inputs:
            if r == inp.path:
                how = "is"
            elif _inside(r, inp.path):
                how = "is inside"
            elif _inside(inp.path, r):
                how = "contains"
            else:
                continue
            shown = "" if uris.is_url(out) or os.path.abspath(out) == r else f" (resolves to {r})"
            raise InputOverwriteError(
                f"{out}: {what}{shown} {how} {inp.what} {inp.path}; outputs never write over inputs "
                f"(--overwrite does not change this): choose another output path"
            )


def guard(xml_uris: str | Iterable[str], outputs: Iterable[tuple[str, str]],
          storage_options: dict | None = None) -> list[InputPath]:
    """Collect the inputs of every XML in ``xml_uris`` and refuse any output touching one."""
    if isinstance(xml_uris, str):
        xml_uris = [xml_uris]
    inputs: list[InputPath] = []
    for x in xml_uris:
        inputs += dataset_inputs(x, storage_options)
    check_outputs(outputs, inputs)
    return inputs


DATA_ROOTS_ENV = "RHAPSO_DATA_ROOTS"


class OutsideDataRootsError(ValueError):
    """A path a run would read or write resolves outside the configured data roots."""


def configured_roots(roots: Iterable[str] | None = None) -> list[str]:
    """The data roots in force: ``roots`` when given, else ``$RHAPSO_DATA_ROOTS`` (``,``-separated,
    or ``:``-separated local paths), else none (no restriction)."""
    if roots:
        return [r for r in roots if r]
    text = os.environ.get(DATA_ROOTS_ENV, "").strip()
    if not text:
        return []
    parts = text.split(",") if ("," in text or "://" in text) else text.split(os.pathsep)
    return [p.strip() for p in parts if p.strip()]


def check_data_roots(paths: Iterable[tuple[str, str]], roots: Iterable[str]) -> None:
    """Refuse the first ``(path, what)`` resolving outside every root (symlinks and ``..`` resolved)."""
    resolved_roots = [canonical_path(r) for r in roots]
    if not resolved_roots:
        return
    for path, what in paths:
        r = canonical_path(path)
        if not any(_inside(r, root) for root in resolved_roots):
            raise OutsideDataRootsError(
                f"{path}: {what} resolves to {r}, outside the data roots ({', '.join(resolved_roots)}); "
                f"this service only reads and writes there ({DATA_ROOTS_ENV} / runtime.data_roots)"
            )


def join(folder: str, *parts: str) -> str:
    """Join under a local folder or a URI prefix."""
    return posixpath.join(folder, *parts) if uris.is_url(folder) else os.path.join(folder, *parts)
