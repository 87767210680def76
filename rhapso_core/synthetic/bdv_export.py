"""Re-save a dataset's views as BDV HDF5, BDV N5 or BigStitcher 2.x zarr, with a matching XML.

For tests and demos: the same pixels (every pyramid level copied as stored, not
recomputed) under another image loader, so any difference in what the pipeline
computes from them is the reader's fault. Views are read whole: meant for small
generated datasets.

Layouts written (see ``../shared/notes/bigstitcher-formats-stitching.md``):

``bdv.hdf5``
    ``s{setup:02d}/resolutions`` and ``subdivisions`` (rows x, y, z),
    ``t{tp:05d}/s{setup:02d}/{level}/cells`` (z, y, x, gzip). ``legacy_int16``
    stores uint16 as int16 bits without ``dataType`` (pre-10.4.10 BDV files);
    otherwise the setup group has ``dataType``. ``partitioned`` writes one file per
    setup (``dataset-{setup:02d}.h5``), a master file whose ``cells`` are external
    links to them, and ``<partition>`` elements in the XML.
``bdv.n5``
    ``setup{s}`` (``downsamplingFactors``, ``dataType``) / ``timepoint{t}`` /
    ``s{level}`` written by tensorstore with ``compression`` (default gzip).
``bdv.multimg.zarr`` (BigStitcher 2.x, loader version 3.0)
    BigStitcher-Spark ``resave``'s layout: one 5D (t, c, z, y, x) OME-Zarr per view
    ``s{setup}-t{tp}.zarr`` and ``<zgroup setup tp path indicies="0 0"/>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rhapso_core.spimdata import (
    Hdf5ImageLoader,
    N5ImageLoader,
    SpimData,
    ZarrImageLoader,
    load_xml,
    save_xml,
)
from rhapso_core.spimdata.preserve import Preserved, RawElement

__all__ = ["export_dataset", "read_view_levels", "write_bdv_hdf5", "write_bdv_n5", "write_bigstitcher2_zarr"]

ExportFormat = Literal["bdv.hdf5", "bdv.n5", "bdv.multimg.zarr"]
ViewLevels = dict[tuple[int, int], tuple[list[np.ndarray], list[tuple[int, int, int]]]]


def read_view_levels(sd: SpimData) -> ViewLevels:
    """``{(timepoint, setup): ([level arrays (z, y, x)], [factors (z, y, x)])}`` of every view."""
    from rhapso_core.pipeline.dataset import open_view

    out: ViewLevels = {}
    for v in sd.views():
        src = open_view(sd, v)
        arrays = [src.read(tuple((0, n) for n in src.level_shape(lv)), lv) for lv in range(src.n_levels)]
        out[v] = (arrays, [tuple(src.level_factors(lv)) for lv in range(src.n_levels)])
    return out


def _chunks(shape, chunk_zyx) -> tuple[int, int, int]:
    return tuple(int(max(1, min(c, n))) for c, n in zip(chunk_zyx, shape))  # type: ignore[return-value]


def _write_hdf5_views(path: Path, views: ViewLevels, chunk_zyx, legacy_int16: bool, setups_only=None) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for (t, s), (arrays, factors) in sorted(views.items()):
            if setups_only is not None and s not in setups_only:
                continue
            sg = f.require_group(f"s{s:02d}")
            if "resolutions" not in sg:
                sg["resolutions"] = np.asarray([f_[::-1] for f_ in factors], dtype=np.float64)
                sg["subdivisions"] = np.asarray(
                    [_chunks(a.shape, chunk_zyx)[::-1] for a in arrays], dtype=np.int32
                )
                if not legacy_int16:
                    sg.attrs["dataType"] = str(arrays[0].dtype)
            for lv, a in enumerate(arrays):
                data = a.view(np.int16) if legacy_int16 and a.dtype == np.uint16 else a
                f.create_dataset(
                    f"t{t:05d}/s{s:02d}/{lv}/cells", data=data, chunks=_chunks(a.shape, chunk_zyx), compression="gzip"
                )


def write_bdv_hdf5(
    out_dir: Path, views: ViewLevels, *, chunk_zyx=(16, 32, 32), legacy_int16: bool = False, partitioned: bool = False
) -> Hdf5ImageLoader:
    """Write ``dataset.h5`` (and partition files); returns the XML loader."""
    import h5py

    master = out_dir / "dataset.h5"
    if not partitioned:
        _write_hdf5_views(master, views, chunk_zyx, legacy_int16)
        return Hdf5ImageLoader(path="dataset.h5", path_type="relative", raw=Preserved(hints={"hdf5": "dataset.h5"}))
    setups = sorted({s for _, s in views})
    timepoints = sorted({t for t, _ in views})
    children = []
    for i, s in enumerate(setups):
        name = f"dataset-{s:02d}.h5"
        _write_hdf5_views(out_dir / name, views, chunk_zyx, legacy_int16, setups_only={s})
        xml = (
            f'<partition><path type="relative">{name}</path><timepoints>{" ".join(map(str, timepoints))}'
            f"</timepoints><setups>{s}</setups></partition>"
        ).encode()
        children.append((i + 1, RawElement(xml)))
    # The master links every level's cells to its partition file, as BDV's WriteSequenceToHdf5 does.
    with h5py.File(master, "w") as f:
        for (t, s), (arrays, _) in sorted(views.items()):
            with h5py.File(out_dir / f"dataset-{s:02d}.h5", "r") as p:
                if f"s{s:02d}" not in f:
                    p.copy(f"s{s:02d}", f)
            for lv in range(len(arrays)):
                f[f"t{t:05d}/s{s:02d}/{lv}/cells"] = h5py.ExternalLink(
                    f"dataset-{s:02d}.h5", f"t{t:05d}/s{s:02d}/{lv}/cells"
                )
    return Hdf5ImageLoader(
        path="dataset.h5", path_type="relative", raw=Preserved(children=tuple(children), hints={"hdf5": "dataset.h5"})
    )


def _json(path: Path, data: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "attributes.json").write_text(json.dumps(data))


def write_bdv_n5(
    out_dir: Path, views: ViewLevels, *, chunk_zyx=(16, 32, 32), compression: dict[str, Any] | None = None
) -> N5ImageLoader:
    """Write ``dataset.n5`` with tensorstore; returns the XML loader."""
    import tensorstore as ts

    root = out_dir / "dataset.n5"
    _json(root, {"n5": "2.5.1"})
    comp = compression or {"type": "gzip"}
    for (t, s), (arrays, factors) in sorted(views.items()):
        fx = [list(f[::-1]) for f in factors]
        _json(root / f"setup{s}", {"downsamplingFactors": fx, "dataType": str(arrays[0].dtype)})
        _json(root / f"setup{s}" / f"timepoint{t}", {"multiScale": True, "resolution": [1.0, 1.0, 1.0]})
        for lv, a in enumerate(arrays):
            path = root / f"setup{s}" / f"timepoint{t}" / f"s{lv}"
            store = ts.open(
                {
                    "driver": "n5",
                    "kvstore": {"driver": "file", "path": str(path) + "/"},
                    "metadata": {
                        "dimensions": list(a.shape[::-1]),
                        "blockSize": list(_chunks(a.shape, chunk_zyx)[::-1]),
                        "dataType": str(a.dtype),
                        "compression": comp,
                    },
                },
                create=True,
                delete_existing=True,
            ).result()
            store[...] = a.T  # N5 is x, y, z
            attrs = json.loads((path / "attributes.json").read_text())
            attrs["downsamplingFactors"] = fx[lv]
            (path / "attributes.json").write_text(json.dumps(attrs))
    return N5ImageLoader(path="dataset.n5", path_type="relative", version="1.0", raw=Preserved(hints={"n5": "dataset.n5"}))


def write_bigstitcher2_zarr(
    out_dir: Path, views: ViewLevels, voxel_sizes_zyx: dict[int, tuple[float, float, float]], *, chunk_zyx=(16, 32, 32)
) -> ZarrImageLoader:
    """Write ``dataset.ome.zarr/s{setup}-t{tp}.zarr`` 5D images; returns the version-3.0 loader."""
    import zarr

    from rhapso_core.io.ngff import build_multiscales_attrs

    root = out_dir / "dataset.ome.zarr"
    groups = {}
    for (t, s), (arrays, factors) in sorted(views.items()):
        name = f"s{s}-t{t}.zarr"
        g = zarr.open_group(str(root / name), mode="w", zarr_format=2)
        attrs = build_multiscales_attrs(
            version="0.4", paths=[str(i) for i in range(len(arrays))], voxel_size_zyx=voxel_sizes_zyx[s],
            origin_zyx=(0.0, 0.0, 0.0), factors_zyx=factors,
        )
        ms = attrs["multiscales"][0]
        ms["axes"] = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + ms["axes"]
        for d in ms["datasets"]:
            for tr in d["coordinateTransformations"]:
                key = tr["type"]
                tr[key] = [1.0, 1.0] + list(tr[key]) if key == "scale" else [0.0, 0.0] + list(tr[key])
        for i, a in enumerate(arrays):
            arr = g.create_array(str(i), shape=(1, 1, *a.shape), dtype=a.dtype, chunks=(1, 1, *_chunks(a.shape, chunk_zyx)))
            arr[0, 0] = a
        g.attrs.update(attrs)
        groups[(t, s)] = (name, (0, 0))
    return ZarrImageLoader.bigstitcher2("dataset.ome.zarr/", groups)


def export_dataset(
    xml: str | os.PathLike,
    out_dir: str | os.PathLike,
    fmt: ExportFormat,
    *,
    legacy_int16: bool = False,
    partitioned: bool = False,
    n5_compression: dict[str, Any] | None = None,
    chunk_zyx=(16, 32, 32),
) -> Path:
    """Write the views of ``xml`` in ``fmt`` under ``out_dir`` with ``out_dir/dataset.xml``.

    Setups, registrations and everything else in the XML are kept; only the image
    loader changes. Returns the new XML's path.
    """
    sd = load_xml(str(xml))
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    views = read_view_levels(sd)
    if fmt == "bdv.hdf5":
        loader = write_bdv_hdf5(out, views, chunk_zyx=chunk_zyx, legacy_int16=legacy_int16, partitioned=partitioned)
    elif fmt == "bdv.n5":
        loader = write_bdv_n5(out, views, chunk_zyx=chunk_zyx, compression=n5_compression)
    elif fmt == "bdv.multimg.zarr":
        vox = {s.id: tuple(float(v) for v in (s.voxel_size or (1.0, 1.0, 1.0))[::-1]) for s in sd.setups.values()}
        loader = write_bigstitcher2_zarr(out, views, vox, chunk_zyx=chunk_zyx)
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    target = out / "dataset.xml"
    new = sd.with_image_loader(loader).replace(base_path_text=".", base_path_type="relative")
    save_xml(new, str(target), rebase_base_path=False)
    return target
