"""Shared checks of the reliability tests: output digests, XML transforms, input hashes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import numpy as np

#: Figures collected by the tests, printed at the end of the session (README table).
FIGURES: dict[str, object] = {}

#: The dataset every end-to-end run uses: 2x2 tiles of 128x128x32, 20 % overlap.
DATASET = dict(grid=(2, 2, 1), tile_size_xyz=(128, 128, 32), overlap=0.2, n_levels=2, seed=3,
               blob_density=1500.0, chunk_size_xyz=(64, 64, 32))
RUN_OVERRIDES = ["runtime.num_cpus=2"]

#: Stitch outputs whose bytes must not depend on runner, storage, faults or retries.
#: Excluded: the QC report (embeds paths) and the XMLs (BasePath differs by location;
#: compared by transforms instead). Zarr metadata of the point store carries random
#: consistency tokens (a new one per write, by design): compared without them.
COMPARED_TREES = ("fused.ome.zarr", "interestpoints.zarr", "interestpoints.n5")


def _strip_tokens(obj):
    if isinstance(obj, dict):
        return {k: _strip_tokens(v) for k, v in obj.items() if not k.endswith("token")}
    if isinstance(obj, list):
        return [_strip_tokens(v) for v in obj]
    return obj


def tree_digest(fs, root: str) -> dict[str, str]:
    """``{relative path: sha256}`` of every object under ``root`` (any fsspec filesystem).

    ``zarr.json`` objects are hashed after dropping keys ending in ``token``.
    """
    base = fs._strip_protocol(root.rstrip("/")).rstrip("/")
    out = {}
    for path in fs.find(base):
        rel = path[len(base) :].lstrip("/")
        data = fs.cat_file(path)
        if rel.endswith("zarr.json"):
            data = json.dumps(_strip_tokens(json.loads(data)), sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def outputs_digest(fs, out_dir: str) -> dict[str, str]:
    """Digest of the compared output trees of one stitch run (keys prefixed by tree name)."""
    d = {}
    for name in COMPARED_TREES:
        for rel, h in tree_digest(fs, f"{out_dir.rstrip('/')}/{name}").items():
            d[f"{name}/{rel}"] = h
    return d


def diff_digests(a: dict, b: dict) -> list[str]:
    """Human-readable differences (missing, extra, changed objects)."""
    out = [f"only in first: {k}" for k in sorted(set(a) - set(b))]
    out += [f"only in second: {k}" for k in sorted(set(b) - set(a))]
    out += [f"bytes differ: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return out


def registrations(xml_uri: str) -> dict:
    """``{view: view_to_world 4x4}`` of a (solved) XML."""
    from rhapso_core.spimdata import load_xml

    sd = load_xml(xml_uri)
    return {v: sd.view_to_world(v) for v in sd.views()}


def assert_same_registrations(xml_a: str, xml_b: str, atol: float = 1e-9) -> None:
    ra, rb = registrations(xml_a), registrations(xml_b)
    assert set(ra) == set(rb), (sorted(ra), sorted(rb))
    for v in ra:
        np.testing.assert_allclose(ra[v], rb[v], rtol=0, atol=atol,
                                   err_msg=f"view {v}: solved transforms differ beyond {atol}")


def folder_hash(root: Path) -> str:
    """One sha256 over every file's relative path, mode-independent bytes (input integrity)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def folder_bytes(root) -> int:
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


async def _all(read, **kwargs) -> list:
    """Every item of a paged Prefect client read (the API caps a page at 200)."""
    out, offset = [], 0
    while True:
        page = await read(limit=200, offset=offset, **kwargs)
        out += page
        if len(page) < 200:
            return out
        offset += 200


def read_all_logs() -> list[str]:
    """Every log message the Prefect API holds (``POST /api/logs/filter``, paged)."""
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return [f"{lg.name} {lg.message}" for lg in await _all(client.read_logs)]

    return asyncio.run(read())


def read_all_artifacts_and_params() -> list[str]:
    """Artifact keys, descriptions and data, and every flow run's parameters, as text."""
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            arts = await _all(client.read_artifacts)
            runs = await _all(client.read_flow_runs)
            texts = [f"{a.key} {a.description} {a.data}" for a in arts]
            texts += [json.dumps(r.parameters, default=str) for r in runs]
            return texts

    return asyncio.run(read())


def task_runs(names_like: str | None = None) -> list[dict]:
    """Task runs (name, state, run_count, state names) of every flow run so far."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    async def read():
        async with get_client() as client:
            flt = TaskRunFilter(name=TaskRunFilterName(like_=names_like)) if names_like else None
            runs = await _all(client.read_task_runs, task_run_filter=flt)
            out = []
            for r in runs:
                states = await client.read_task_run_states(r.id)
                out.append({"id": str(r.id), "name": r.name, "state": r.state.name, "run_count": r.run_count,
                            "states": [s.name for s in states]})
            return out

    return asyncio.run(read())
