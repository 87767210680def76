"""Read BigDataViewer N5 (``bdv.n5``) views, and plain N5 datasets, lazily with tensorstore.

BDV layout (bigdataviewer-core "BDV N5 format.md", ``bdv/img/n5/N5ImageLoader.java``)::

    setup{s}/                 attributes: downsamplingFactors [[x, y, z] per level], dataType
    setup{s}/timepoint{t}/s{level}   N5 datasets; dimensions and blockSize listed x, y, z

N5 lists dimensions in x, y, z order (column-major); tensorstore's ``n5`` driver keeps
that order, so a (z, y, x) box is read as ``[x, y, z]`` and transposed.

Why tensorstore: it is a maintained N5 implementation (Google) with every codec BDV
writers use except lz4 (raw, gzip/zlib, bzip2, xz, blosc, zstd), reads only the
blocks a box touches (memory bounded by the box) and treats a missing block as
zeros, as BDV does. zarr 3 has no N5 store. lz4-compressed N5 (lz4-java block
streams) is refused with a one-line error naming the dataset.

S3: tensorstore's own ``s3`` kvstore, configured from the same ``storage_options``
as s3fs (``client_kwargs.endpoint_url`` or ``AWS_ENDPOINT_URL``, ``anon``). It
takes credentials from the environment / AWS profile only, not from a dict, so
``storage_options`` with explicit ``key``/``secret`` are read through an fsspec
kvstore adapter instead (:class:`_FsspecN5Level`): tensorstore still decodes, we
only fetch block bytes with s3fs.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..image_source import Box
from .errors import ImageIOError
from .multiscale import MultiscaleImage, StoredLevel, factors_from_shapes
from .uri import fs_for, is_s3, join_uri, normalize_uri

__all__ = ["open_n5_image", "n5_kvstore_spec", "read_n5_attributes"]


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


def read_n5_attributes(uri: str, storage_options: dict[str, Any] | None = None) -> dict | None:
    """The ``attributes.json`` of an N5 group or dataset, or None when there is none."""
    fs, path = fs_for(join_uri(uri, "attributes.json"), storage_options)
    try:
        with fs.open(path, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except PermissionError as e:
        raise ImageIOError(f"{uri}: access denied ({_one_line(e)})") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ImageIOError(f"{uri}/attributes.json: not valid JSON") from None
    if not isinstance(data, dict):
        raise ImageIOError(f"{uri}/attributes.json: not a JSON object")
    return data


def _explicit_credentials(storage_options: dict[str, Any] | None) -> bool:
    so = storage_options or {}
    return any(k in so for k in ("key", "secret", "token", "aws_access_key_id", "aws_secret_access_key"))


def n5_kvstore_spec(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tensorstore kvstore spec for a local path or an ``s3://`` URL.

    The S3 endpoint comes from ``storage_options["client_kwargs"]["endpoint_url"]``,
    else ``AWS_ENDPOINT_URL``; ``anon=True`` makes unsigned requests.
    """
    u = normalize_uri(uri)
    if not is_s3(u):
        return {"driver": "file", "path": u.rstrip("/") + "/"}
    so = storage_options or {}
    bucket, _, key = u[len("s3://") :].partition("/")
    spec: dict[str, Any] = {"driver": "s3", "bucket": bucket, "path": key.rstrip("/") + "/"}
    ck = so.get("client_kwargs") or {}
    endpoint = ck.get("endpoint_url") or so.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        spec["endpoint"] = endpoint
    region = ck.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        spec["aws_region"] = region
    elif endpoint:
        spec["aws_region"] = "us-east-1"  # S3-compatible endpoints sign with some region; this is boto's default
    if so.get("anon"):
        spec["aws_credentials"] = {"type": "anonymous"}
    return spec


class N5Level(StoredLevel):
    """One N5 dataset (a pyramid level) read by (z, y, x) box through tensorstore."""

    _handles = ("_store",)

    def __init__(self, uri: str, attrs: dict, storage_options: dict[str, Any] | None):
        self.uri = uri
        self.storage_options = storage_options
        dims = attrs.get("dimensions")
        if not isinstance(dims, list) or len(dims) not in (2, 3):
            raise ImageIOError(f"{uri}: N5 dataset dimensions {dims!r} are not 2D or 3D (x, y[, z])")
        comp = attrs.get("compression") or {"type": attrs.get("compressionType", "raw")}
        if isinstance(comp, dict) and str(comp.get("type", "")).lower() == "lz4":
            raise ImageIOError(f"{uri}: N5 lz4 compression (lz4-java block stream) is not readable here; resave it")
        self._ndim = len(dims)
        x, y = int(dims[0]), int(dims[1])
        z = int(dims[2]) if len(dims) == 3 else 1
        self._shape = (z, y, x)
        try:
            self._dtype = np.dtype(str(attrs["dataType"]))
        except (KeyError, TypeError):
            raise ImageIOError(f"{uri}: N5 dataset has no valid dataType") from None
        self._store = None

    def _open(self):
        if self._store is None:
            import tensorstore as ts

            if is_s3(self.uri) and _explicit_credentials(self.storage_options):
                self._store = _FsspecN5Level(self.uri, self.storage_options)
            else:
                spec = {"driver": "n5", "kvstore": n5_kvstore_spec(self.uri, self.storage_options)}
                try:
                    self._store = ts.open(spec, read=True, open=True).result()
                except Exception as e:  # tensorstore raises ValueError for missing / bad metadata
                    raise ImageIOError(f"{self.uri}: cannot open the N5 dataset ({_one_line(e)})") from None
        return self._store

    def read(self, box: Box) -> np.ndarray:
        store = self._open()
        (z0, z1), (y0, y1), (x0, x1) = box
        try:
            if isinstance(store, _FsspecN5Level):
                out = store.read(box)
            else:
                idx = (slice(x0, x1), slice(y0, y1)) + ((slice(z0, z1),) if self._ndim == 3 else ())
                arr = store[idx].read().result()
                out = arr.T if self._ndim == 3 else arr.T[np.newaxis]
        except ImageIOError:
            raise
        except Exception as e:
            raise ImageIOError(
                f"{self.uri}: cannot read or decode the blocks of box (z, y, x) {tuple(box)} "
                f"(corrupt block?): {_one_line(e)}"
            ) from None
        return np.ascontiguousarray(out)

    def close(self) -> None:
        self._store = None


class _FsspecN5Level:
    """S3 N5 with explicit credentials: block bytes fetched by s3fs, decoded by tensorstore.

    Each block a box touches is copied into an in-memory tensorstore kvstore next
    to the dataset's ``attributes.json`` and read there, so decoding (every codec)
    stays tensorstore's; only the blocks of the box are fetched.
    """

    def __init__(self, uri: str, storage_options: dict[str, Any] | None):
        self.uri = uri
        self.storage_options = storage_options
        self.fs, self.path = fs_for(uri, storage_options)
        self.attrs = read_n5_attributes(uri, storage_options) or {}
        self.block = [int(b) for b in self.attrs.get("blockSize", [])]
        self.ndim = len(self.attrs.get("dimensions", []))

    def read(self, box: Box) -> np.ndarray:
        import tensorstore as ts

        (z0, z1), (y0, y1), (x0, x1) = box
        lo = [x0, y0, z0][: self.ndim]
        hi = [x1, y1, z1][: self.ndim]
        grids = np.meshgrid(*[np.arange(a // b, (c - 1) // b + 1) for a, c, b in zip(lo, hi, self.block)], indexing="ij")
        keys = ["/".join(str(int(v)) for v in g) for g in np.stack(grids, -1).reshape(-1, self.ndim)]
        got = self.fs.cat([f"{self.path}/{k}" for k in keys], on_error="return")
        # A fresh context per read: its memory kvstore holds only this box's blocks.
        ctx = ts.Context()
        kv = ts.KvStore.open({"driver": "memory"}, context=ctx).result()
        kv["attributes.json"] = json.dumps(self.attrs).encode()
        for k in keys:
            data = got.get(f"{self.path}/{k}")
            if isinstance(data, FileNotFoundError) or data is None:
                continue  # a missing block reads as zeros, as in BDV
            if isinstance(data, BaseException):  # denied, unreachable, ...: never silently zeros
                raise ImageIOError(f"{self.uri}/{k}: cannot fetch the N5 block ({_one_line(data)})")
            kv[k] = data
        arr = ts.open({"driver": "n5", "kvstore": {"driver": "memory"}}, context=ctx, read=True, open=True).result()
        out = arr[tuple(slice(a, c) for a, c in zip(lo, hi))].read().result()
        return out.T if self.ndim == 3 else out.T[np.newaxis]


def _level_factors(setup_attrs: dict | None, level_attrs: list[dict], shapes, uri: str) -> list[tuple[int, int, int]]:
    per_level = [a.get("downsamplingFactors") for a in level_attrs]
    if all(isinstance(f, list) and len(f) == 3 for f in per_level):
        rows = per_level
    elif setup_attrs and isinstance(setup_attrs.get("downsamplingFactors"), list):
        rows = setup_attrs["downsamplingFactors"][: len(level_attrs)]
        if len(rows) != len(level_attrs):
            raise ImageIOError(f"{uri}: downsamplingFactors lists {len(rows)} levels, the group has {len(level_attrs)}")
    else:
        return factors_from_shapes(shapes)
    out = []
    for r in rows:
        try:
            x, y, z = (int(round(float(v))) for v in r)
        except (TypeError, ValueError):
            raise ImageIOError(f"{uri}: downsamplingFactors entry {r!r} is not three numbers (x, y, z)") from None
        if min(x, y, z) < 1:
            raise ImageIOError(f"{uri}: downsamplingFactors entry {r!r} is not positive")
        out.append((z, y, x))
    return out


def open_n5_image(
    uri: str,
    dataset: str = "",
    *,
    storage_options: dict[str, Any] | None = None,
    channel: int | None = None,
    timepoint: int | None = None,
) -> MultiscaleImage:
    """Open a BDV N5 view group (``setup0/timepoint0``, levels ``s0, s1, ...``) or one N5 dataset.

    Factors come from each level's ``downsamplingFactors``, else the setup group's
    list, else the level shapes. A missing group is a one-line error naming it.
    """
    full = join_uri(uri, dataset)
    for what, v in (("channel", channel), ("timepoint", timepoint)):
        if v not in (None, 0):
            raise ImageIOError(f"{full}: {what} {v} requested but BDV N5 views have no {what} axis")
    attrs = read_n5_attributes(full, storage_options)
    if attrs is not None and "dimensions" in attrs:
        lv = N5Level(full, attrs, storage_options)
        return MultiscaleImage(uri=full, kind="n5", levels=[lv], factors=[(1, 1, 1)])
    level_attrs: list[dict] = []
    while True:
        a = read_n5_attributes(join_uri(full, f"s{len(level_attrs)}"), storage_options)
        if a is None or "dimensions" not in a:
            break
        level_attrs.append(a)
    if not level_attrs:
        if attrs is None:
            raise ImageIOError(f"{full}: no N5 group or dataset here (no attributes.json)")
        raise ImageIOError(f"{full}: N5 group has no level datasets s0, s1, ...")
    levels = [N5Level(join_uri(full, f"s{i}"), a, storage_options) for i, a in enumerate(level_attrs)]
    setup_attrs = None
    if dataset and "/" in dataset.strip("/"):
        setup_attrs = read_n5_attributes(join_uri(uri, dataset.strip("/").rsplit("/", 1)[0]), storage_options)
    factors = _level_factors(setup_attrs, level_attrs, [lv.shape for lv in levels], full)
    return MultiscaleImage(uri=full, kind="n5", levels=levels, factors=factors)


# ---------------------------------------------------------------------- registration


def _open_kind(uri, dataset, *, files, storage_options, channel, timepoint) -> MultiscaleImage:
    return open_n5_image(uri, dataset, storage_options=storage_options, channel=channel, timepoint=timepoint)


def _register() -> None:
    from .registry import ImageFormat, register_format

    register_format(
        ImageFormat(
            "n5",
            _open_kind,
            suffixes=(".n5",),
            sniff=lambda names: "attributes.json" in names and "zarr.json" not in names,
            description="BigDataViewer N5 (bdv.n5) view group setup{s}/timepoint{t}, or one N5 dataset",
        )
    )


_register()
