"""multiview-stitcher's whole job on OME-Zarr tiles: read, register, fuse, write a multiscale OME-Zarr.

Runs inside ``bench/_venvs/mvstitcher`` (multiview-stitcher and its dependencies, not the
project's), started by ``bench/bench_stitch_peers.py`` as a fresh process whose wall time is
the figure compared. Input: a JSON job with, per tile, the zarr array of its full resolution
(z y x), its spacing and stage translation per axis (um), and the output path. Everything is
multiview-stitcher's defaults: phase-correlation registration (``registration.register``)
with its global optimisation, weighted-average fusion with its blending, and the OME-Zarr
writer with its pyramid (``fusion.fuse(..., output_zarr_url=..., zarr_options={"ome_zarr":
True})``), dask's default scheduler.

Output (the JSON file named second): seconds per step (imports, read, register, fuse and
write), the affine per tile ((ndim+1)^2, z y x, um, stage-positioned -> registered) and the
fused image's shape and levels.
"""

import json
import sys
import time

T0 = time.perf_counter()


def main(job_path, out_path):
    import numpy as np
    import zarr
    from multiview_stitcher import fusion, msi_utils, registration
    from multiview_stitcher import spatial_image_utils as si_utils

    t_import = time.perf_counter() - T0
    job = json.load(open(job_path))
    t0 = time.perf_counter()
    msims = []
    for t in job["tiles"]:
        arr = np.asarray(zarr.open_array(t["zarr"], mode="r")[...])
        sim = si_utils.get_sim_from_array(arr, dims=["z", "y", "x"], scale=t["spacing"], translation=t["translation"],
                                          transform_key="stage")
        msims.append(msi_utils.get_msim_from_sim(sim, scale_factors=[]))
    t1 = time.perf_counter()
    params = registration.register(msims, transform_key="stage", new_transform_key="registered",
                                   reg_channel_index=0)
    t2 = time.perf_counter()
    sims = [msi_utils.get_sim_from_msim(m) for m in msims]
    fused = fusion.fuse(sims, transform_key="registered", output_zarr_url=job["out"],
                        zarr_options={"ome_zarr": True})
    t3 = time.perf_counter()
    levels = sorted(k for k in zarr.open_group(job["out"], mode="r").array_keys())
    affines = [np.asarray(p).reshape(-1, np.asarray(p).shape[-1], np.asarray(p).shape[-1])[0].tolist() for p in params]
    json.dump({"import_s": t_import, "read_s": t1 - t0, "register_s": t2 - t1, "fuse_write_s": t3 - t2,
               "affines": affines, "fused_shape": [int(n) for n in fused.shape], "levels": levels},
              open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
