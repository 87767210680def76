"""Neuroglancer views of a run: the fused OME-Zarr and the raw tiles placed by their registrations.

The state puts everything in the XML's world frame: global dimensions ``x y z``
whose unit is the physical length of one world unit (from the views' voxel sizes
and calibrations). Each raw tile is an image layer whose source ``transform``
maps the tile's voxel index (Neuroglancer's OME-Zarr source dimensions ``z y x``;
Neuroglancer centres voxels on integer coordinates for OME-Zarr, as BigStitcher
does) to world through ``view_to_world``; the fused image maps its voxel index to
world through the fusion grid it records.

Data must be reachable by the browser: ``s3://bucket/key`` becomes
``zarr://s3://bucket/key`` (public buckets, or a bucket with CORS), local data is
served over HTTP. To look at a local run::

    from rhapso_core.qc.neuroglancer import serve_for_neuroglancer, neuroglancer_link
    server = serve_for_neuroglancer("/data/run", port=9000)     # CORS-enabled, background thread
    print(neuroglancer_link("/data/run/aligned.xml", "/data/run/fused.ome.zarr",
                            base_url=server.url, serve_root="/data/run"))
    # open the link in a browser on the same machine; server.shutdown() when done

(The demo viewer is served over https; browsers allow it to fetch from
``http://127.0.0.1`` / ``http://localhost``, not from other http hosts.)
"""

from __future__ import annotations

import functools
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import numpy as np

from rhapso_core import transforms

__all__ = [
    "DEFAULT_VIEWER",
    "NeuroglancerError",
    "source_url",
    "neuroglancer_state",
    "neuroglancer_url",
    "neuroglancer_link",
    "serve_for_neuroglancer",
]

DEFAULT_VIEWER = "https://neuroglancer-demo.appspot.com/"

_UNIT_M = {"micrometer": 1e-6, "nanometer": 1e-9, "millimeter": 1e-3, "meter": 1.0, "angstrom": 1e-10}


class NeuroglancerError(ValueError):
    """Data that a Neuroglancer state cannot point at (the message names the path)."""


def source_url(uri: str, base_url: str | None = None, serve_root: str | None = None, scheme: str = "zarr") -> str:
    """A Neuroglancer data source URL for a zarr image.

    Parameters
    ----------
    uri : str
        ``s3://bucket/key``, ``http(s)://...`` or a local path.
    base_url : str, optional
        For a local path: the HTTP URL at which ``serve_root`` is served, e.g. ``http://127.0.0.1:9000/``.
    serve_root : str, optional
        The served local folder; ``uri`` must lie inside it.
    scheme : str
        Neuroglancer data source prefix, default ``zarr`` (zarr v2 and v3).
    """
    u = str(uri).rstrip("/")
    if u.startswith(("s3://", "gs://", "http://", "https://")):
        return f"{scheme}://{u}/"
    if base_url is None or serve_root is None:
        raise NeuroglancerError(
            f"{u}: local data needs base_url and serve_root (serve the folder with serve_for_neuroglancer)"
        )
    path = Path(u).resolve()
    root = Path(serve_root).resolve()
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise NeuroglancerError(f"{u}: not inside the served folder {root}") from None
    return f"{scheme}://{base_url.rstrip('/')}/{quote(rel.as_posix())}/"


def _world_unit(sd, views) -> tuple[np.ndarray, str]:
    from rhapso_core.pipeline.fuse import physical_unit_per_world

    per_world, unit = physical_unit_per_world(sd, views)
    # One number (isotropic world frame) or one per axis: either way three scales x y z.
    scale = np.broadcast_to(np.asarray(per_world, dtype=np.float64), (3,)).copy()
    if unit is None or unit not in _UNIT_M:
        return scale, ""
    return scale * _UNIT_M[unit], "m"


def _matrix_from_zyx_index(affine_xyz: np.ndarray) -> list[list[float]]:
    # Rows are the output dimensions x, y, z; columns the source dimensions z, y, x, then translation.
    a = np.asarray(affine_xyz, dtype=np.float64)
    return [[float(a[r, 2]), float(a[r, 1]), float(a[r, 0]), float(a[r, 3])] for r in range(3)]


def _read_grid(fused_uri: str, storage_options) -> dict | None:
    try:
        import zarr

        from rhapso_core.pipeline.fuse import GRID_ATTR

        attrs = zarr.open_group(fused_uri, mode="r", storage_options=storage_options).attrs.asdict()
        return attrs.get(GRID_ATTR)
    except Exception:  # an image fused elsewhere has no grid record: fall back to its NGFF metadata
        return None


def display_window(uri: str, storage_options: dict | None = None) -> list[float] | None:
    """The intensity range to show an OME-Zarr image with: its ``omero`` window when it has one,
    else the 0.1-99.9th percentiles of its coarsest level. Neuroglancer's default for uint16
    (0-65535) shows a typical microscopy image black; None when the image cannot be read."""
    try:
        import zarr

        group = zarr.open_group(uri, mode="r", storage_options=storage_options)
        attrs = group.attrs.asdict()
        omero = attrs.get("omero") or attrs.get("ome", {}).get("omero") or {}
        windows = [c.get("window") for c in omero.get("channels", []) if c.get("window")]
        if windows:
            return [float(min(w["start"] for w in windows)), float(max(w["end"] for w in windows))]
        ms = (attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or [{}])[0]
        coarsest = ms.get("datasets", [{}])[-1].get("path")
        if coarsest is None:
            return None
        data = np.asarray(group[coarsest][...], dtype=np.float64)
        lo, hi = np.percentile(data, [0.1, 99.9])
        return [float(lo), float(hi if hi > lo else lo + 1.0)]
    except Exception:  # the viewer's default range is a fallback, not a failure
        return None


def _with_window(layer: dict, window: list[float] | None) -> dict:
    if window is not None:
        layer["shaderControls"] = {"normalized": {"range": window}}
    return layer


def neuroglancer_state(
    solved_xml: str,
    fused_uri: str | None = None,
    *,
    base_url: str | None = None,
    serve_root: str | None = None,
    include_tiles: bool = True,
    fused_grid: dict | None = None,
    storage_options: dict | None = None,
) -> dict:
    """A Neuroglancer viewer state (JSON-able dict) showing the fused image and the placed tiles.

    Parameters
    ----------
    solved_xml : str
        The XML whose registrations place the tiles (local or ``s3://``).
    fused_uri : str, optional
        The fused OME-Zarr.
    base_url, serve_root : str, optional
        How local paths are reached over HTTP (see :func:`source_url`).
    include_tiles : bool
        Add one image layer per view (OME-Zarr views only; others are listed under ``_skipped``).
    fused_grid : dict, optional
        The fusion grid record (``origin_xyz``, ``voxel_size_xyz``, ``shape_zyx``); read from the
        fused image's attributes when None. Without one the image's own NGFF geometry is used.
    storage_options : dict, optional
        s3fs options used to read the XML and the fused image's attributes.

    Returns
    -------
    dict
        The state; ``_skipped`` (not a Neuroglancer key; removed by :func:`neuroglancer_url`)
        lists views that could not be added and why.
    """
    from rhapso_core.spimdata import load_xml

    sd = load_xml(solved_xml, storage_options)
    views = sd.views()
    scale, unit = _world_unit(sd, views)
    dims = {ax: [float(s), unit] for ax, s in zip("xyz", scale)}
    layers, skipped, boxes = [], [], []
    if fused_uri is not None:
        src: dict = {"url": source_url(fused_uri, base_url, serve_root)}
        grid = fused_grid if fused_grid is not None else _read_grid(fused_uri, storage_options)
        if grid is not None:
            a = transforms.scaling(grid["voxel_size_xyz"])
            a[:3, 3] = grid["origin_xyz"]
            matrix = _matrix_from_zyx_index(a)
            if "channels" in grid:
                # A t, c, z, y, x fusion output: t and c pass through (c' is Neuroglancer's channel axis).
                matrix = [[0.0, 0.0] + row for row in matrix] + [[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]]
                src["transform"] = {"outputDimensions": {**dims, "t": [1, ""], "c'": [1, ""]}, "matrix": matrix}
            else:
                src["transform"] = {"outputDimensions": dims, "matrix": matrix}
            size = np.asarray(grid["shape_zyx"][::-1])
            boxes.append(transforms.view_bounding_box(a, size))
        layers.append(_with_window({"type": "image", "name": "fused", "source": src, "visible": True},
                                   display_window(fused_uri, storage_options)))
    if include_tiles:
        tile_window: list | None = []  # one range for every tile (one acquisition): from the first read
        for v in views:
            setup = sd.setup_of(v)
            try:
                loc = sd.image_location(v)
            except Exception as exc:  # the XML model's message names file and element
                skipped.append({"view": list(v), "reason": str(exc)})
                continue
            if loc.parent is not None or loc.kind != "ome-zarr":
                skipped.append({"view": list(v), "reason": f"{loc.kind} {'split view' if loc.parent else 'image'}"
                                " cannot be shown as a zarr layer"})
                continue
            uri = loc.uri.rstrip("/") + ("/" + loc.dataset.strip("/") if loc.dataset else "")
            try:
                url = source_url(uri, base_url, serve_root)
            except NeuroglancerError as exc:
                skipped.append({"view": list(v), "reason": str(exc)})
                continue
            affine = sd.view_to_world(v)
            if setup.size is not None:
                boxes.append(transforms.view_bounding_box(affine, setup.size))
            if tile_window == []:
                tile_window = display_window(uri, storage_options)
            layers.append(_with_window({
                "type": "image", "name": setup.name or f"t{v[0]} s{v[1]}",
                "source": {"url": url, "transform": {"outputDimensions": dims, "matrix": _matrix_from_zyx_index(affine)}},
                "visible": fused_uri is None,
            }, tile_window))
    if boxes:
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        position = ((lo + hi) / 2.0).tolist()
        extent = float(np.max(hi - lo))
    else:
        position, extent = [0.0, 0.0, 0.0], 100.0
    state = {
        "dimensions": dims,
        "position": position,
        "crossSectionScale": max(extent / 600.0, 1e-3),
        "projectionScale": max(extent * 1.5, 1.0),
        "layers": layers,
        "layout": "4panel",
        "_skipped": skipped,
    }
    if layers:
        state["selectedLayer"] = {"layer": layers[0]["name"], "visible": False}
    return state


def neuroglancer_url(state: dict, viewer: str = DEFAULT_VIEWER) -> str:
    """``<viewer>#!<url-encoded JSON state>`` (keys starting with ``_`` are left out)."""
    clean = {k: v for k, v in state.items() if not k.startswith("_")}
    text = json.dumps(clean, separators=(",", ":"))
    return viewer.rstrip("/") + "/#!" + quote(text, safe="")


def neuroglancer_link(solved_xml: str, fused_uri: str | None = None, **kwargs) -> str:
    """:func:`neuroglancer_url` of :func:`neuroglancer_state` (same arguments, plus ``viewer``)."""
    viewer = kwargs.pop("viewer", DEFAULT_VIEWER)
    return neuroglancer_url(neuroglancer_state(solved_xml, fused_uri, **kwargs), viewer)


class _CORSRequestHandler(SimpleHTTPRequestHandler):
    """Static files with the CORS headers a web viewer on another origin needs."""

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Headers", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Expose-Headers", "Content-Length, Content-Type")
        super().end_headers()

    def do_OPTIONS(self):  # noqa: N802 (http.server naming)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002
        pass  # a viewer fetches thousands of chunks; keep the console quiet


def serve_for_neuroglancer(folder: str | os.PathLike, port: int = 9000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve a local folder over HTTP with CORS headers, in a background thread.

    Parameters
    ----------
    folder : path
        Folder to serve (pass it as ``serve_root`` to :func:`neuroglancer_state`).
    port : int, default 9000
        TCP port; 0 picks a free one.
    host : str, default "127.0.0.1"
        Interface to listen on (loopback: only this machine's browser can read the data).

    Returns
    -------
    ThreadingHTTPServer
        Running; ``server.url`` is its base URL. Stop it with ``server.shutdown(); server.server_close()``.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise NeuroglancerError(f"{root}: not a folder")
    handler = functools.partial(_CORSRequestHandler, directory=str(root))
    server = ThreadingHTTPServer((host, int(port)), handler)
    server.daemon_threads = True
    server.url = f"http://{host}:{server.server_address[1]}/"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name=f"ng-serve-{root.name}", daemon=True).start()
    return server
