"""multiview-stitcher's fusion alone, onto a given output grid (runs in ``bench/_venvs/mvstitcher``).

Started by ``bench/peer_fusion.py`` (``bench/bench_fusion_core.py --peers``) as a fresh process
of multiview-stitcher's own virtual environment. Input: a JSON job with, per tile, its 5-D
``(t, c, z, y, x)`` zarr array and its affine (4 x 4, z y x, view voxel -> world), the output
grid (origin of voxel 0's centre, spacing and shape, z y x), the output chunk shape, the
blending widths (world units, z y x), the Blosc codec of the output and the output path.

What runs: ``fusion.fuse`` with its default ``weighted_average_fusion`` (cosine blending
weights over ``blending_widths``, normalised per voxel), linear interpolation
(``interpolation_order=1``), tiles given as Dask arrays over their zarr arrays
(``dask.array.from_zarr``: each output chunk reads only the input chunks it needs), written
chunk by chunk into a plain zarr array at ``out`` (``output_zarr_url``; no OME-Zarr pyramid),
Dask's synchronous scheduler (one thread).

Not the tiles as ``zarr.Array`` (multiview-stitcher's zarr-backed path, 0.1.62): on the
benchmark's slightly rotated tiles it placed samples wrongly outside the first output chunk
(inside single views, mean |difference| to ours and to Rhapso 8-31 per chunk instead of 0.5,
not a shift; the same with 3-D arrays), while Dask and NumPy inputs agree with ours to its
truncation to integers.

Output (the JSON file named second): ``wall_s`` and ``cpu_s`` of the ``fusion.fuse`` call
(imports and building the lazy inputs excluded; its planning, reads, resampling, blending
and writes included), ``import_s``, the output shape, and ``peak_rss_mb`` (``VmHWM``).
"""

import json
import sys
import time

T0 = time.perf_counter()


def peak_rss_mb() -> float:
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(job_path: str, out_path: str) -> None:
    import dask
    import dask.array as da
    import numpy as np
    import zarr
    from multiview_stitcher import fusion, param_utils
    from multiview_stitcher import spatial_image_utils as si_utils

    dask.config.set(scheduler="synchronous")
    t_import = time.perf_counter() - T0
    job = json.load(open(job_path))
    dims = ["z", "y", "x"]
    sims = []
    for t in job["tiles"]:
        arr = da.from_zarr(zarr.open_array(t["zarr"], mode="r"))
        sims.append(si_utils.get_sim_from_array(
            arr, dims=["t", "c", *dims], scale=dict.fromkeys(dims, 1.0), translation=dict.fromkeys(dims, 0.0),
            affine=param_utils.affine_to_xaffine(np.asarray(t["affine_zyx"], dtype=np.float64)),
            transform_key="registered"))
    g = job["grid"]
    osp = {"origin": dict(zip(dims, map(float, g["origin_zyx"]))), "spacing": dict(zip(dims, map(float, g["spacing_zyx"]))),
           "shape": dict(zip(dims, map(int, g["shape_zyx"])))}
    codec = job["codec"]
    creation = {"codecs": [zarr.codecs.BytesCodec(), zarr.codecs.BloscCodec(
        cname=codec["cname"], clevel=int(codec["clevel"]), shuffle=codec["shuffle"])]}
    t0, c0 = time.perf_counter(), time.process_time()
    fused = fusion.fuse(
        images=sims, transform_key="registered", output_stack_properties=osp,
        output_chunksize=dict(zip(dims, map(int, job["chunks_zyx"]))), interpolation_order=1,
        blending_widths=dict(zip(dims, map(float, job["blending_widths_zyx"]))),
        output_zarr_url=job["out"], zarr_options={"ome_zarr": False,
                                                  "zarr_array_creation_kwargs": creation})
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    json.dump({"wall_s": wall, "cpu_s": cpu, "import_s": t_import, "shape": [int(n) for n in fused.shape],
               "peak_rss_mb": peak_rss_mb()}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
