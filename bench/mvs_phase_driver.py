"""multiview-stitcher's phase-correlation registration on tiles given as .npy files.

Runs inside ``bench/_venvs/mvstitcher`` (multiview-stitcher and its dependencies, not the
project's). Input: a JSON job (tiles: npy path, translation and spacing per axis z y x in um).
Output: JSON with the registration time and one affine per tile ((ndim+1)^2, z y x, um) mapping
stage-positioned physical coordinates to registered ones, as ``registration.register`` returns.
"""

import json
import sys
import time

import numpy as np


def main(job_path, out_path):
    from multiview_stitcher import msi_utils, registration
    from multiview_stitcher import spatial_image_utils as si_utils

    job = json.load(open(job_path))
    msims = []
    for t in job["tiles"]:
        arr = np.load(t["npy"])
        dims = ["z", "y", "x"] if arr.ndim == 3 else ["y", "x"]
        sim = si_utils.get_sim_from_array(arr, dims=dims, scale=t["spacing"], translation=t["translation"],
                                          transform_key="stage")
        msims.append(msi_utils.get_msim_from_sim(sim, scale_factors=[]))
    t0 = time.perf_counter()
    params = registration.register(msims, transform_key="stage", new_transform_key="registered",
                                   reg_channel_index=0)
    dt = time.perf_counter() - t0
    affines = [np.asarray(p).reshape(-1, np.asarray(p).shape[-1], np.asarray(p).shape[-1])[0].tolist() for p in params]
    json.dump({"seconds": dt, "affines": affines}, open(out_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
