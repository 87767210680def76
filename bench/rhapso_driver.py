"""Run one stage of the published Rhapso 0.4.5 on a dataset (runs in ``bench/_venvs/rhapso045``).

Usage (from this project's benchmarks, never by hand)::

    bench/_venvs/rhapso045/bin/python bench/rhapso_driver.py STAGE CONFIG.json

``STAGE`` is ``detect``, ``match``, ``solve``, ``fuse``, ``multiscale`` or
``grid_store`` (write given points and matches in Rhapso's alignment store, for
the solver benchmark). The last line printed is one JSON object: ``wall_s`` and
``cpu_s`` of the stage (imports excluded), ``peak_rss_mb`` (this process's
``VmHWM``) and stage figures.

How Rhapso is driven
--------------------
Through its public component classes, in the order its Ray pipelines
(``Rhapso/pipelines/ray/*.py``) call them, but as the serial loops those files
carry for debugging (``# DEBUG MATCHING``, ``# ITERATIVE APPROACH``) instead of
``ray.remote``: one process, one core, like the in-process run of our stage
functions it is compared with. Two adaptations, neither touching an algorithm:

* ``OverlapDetection.read_s3_json`` fetches zarr metadata with an anonymous
  ``boto3`` S3 client only; for a local dataset it is replaced by a reader of the
  same JSON files from disk (``zarr.json``, falling back to ``.zarray`` /
  ``.zattrs`` as the original does).
* ``MultiScale`` submits its blocks to Ray; Ray is started in local mode (tasks run
  in this process) before the clock starts.
* RANSAC (a Python loop, about 160 s per pair at 10,000 iterations) runs
  ``rhapso_iterations`` iterations when the config caps it; its time is reported
  separately (``ransac_s``) so the caller can scale it to the full count.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set (MiB), from ``VmHWM`` (not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Quiet:
    """Rhapso prints per chunk / pair; keep stdout for the one JSON result line."""

    def __enter__(self):
        self._stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")
        return self

    def __exit__(self, *exc):
        sys.stdout.close()
        sys.stdout = self._stdout


def _local_read_json(self, path):
    """Local stand-in for ``OverlapDetection.read_s3_json`` (same fallbacks)."""
    if str(path).startswith("s3://"):
        return _ORIG_READ_S3_JSON(self, path)
    p = Path(path)
    candidates = [p]
    if p.name == "zarr.json":
        candidates += [p.parent / ".zarray", p.parent / ".zattrs"]
    for c in candidates:
        if c.exists():
            return json.loads(c.read_text())
    raise FileNotFoundError(path)


_ORIG_READ_S3_JSON = None


def detect(cfg: dict) -> dict:
    global _ORIG_READ_S3_JSON
    from Rhapso.data_prep.xml_to_dataframe import XMLToDataFrame
    from Rhapso.detection.advanced_refinement import AdvancedRefinement
    from Rhapso.detection.difference_of_gaussian import DifferenceOfGaussian
    from Rhapso.detection.image_reader import ImageReader
    from Rhapso.detection.metadata_builder import MetadataBuilder
    from Rhapso.detection.overlap_detection import OverlapDetection
    from Rhapso.detection.points_validation import PointsValidation
    from Rhapso.detection.save_interest_points import SaveInterestPoints
    from Rhapso.detection.view_transform_models import ViewTransformModels

    _ORIG_READ_S3_JSON = OverlapDetection.read_s3_json
    OverlapDetection.read_s3_json = _local_read_json
    p = cfg["params"]
    t0, c0 = time.perf_counter(), time.process_time()
    with _Quiet():
        xml_text = Path(cfg["xml"]).read_text(encoding="utf-8")
        dataframes = XMLToDataFrame(xml_text).run()
        matrices = ViewTransformModels(dataframes).run()
        overlap = OverlapDetection(matrices, dataframes, p["dsxy"], p["dsz"], cfg["image_prefix"], "zarr",
                                   p["overlap_only"])
        area, new_dsxy, new_dsz, level, max_interval, mip = overlap.run()
        chunks = MetadataBuilder(dataframes, area, cfg["image_prefix"], "zarr", new_dsxy, new_dsz,
                                 p["chunks_per_bound"], p["sigma"], "ray", level).run()
        peaks = []
        for meta in chunks:  # the body of process_peak_detection_task, serially
            dog = DifferenceOfGaussian(p["min_intensity"], p["max_intensity"], p["sigma"], p["threshold"],
                                       p["median_filter"], mip)
            view_id, interval, chunk, offset, lb = ImageReader("zarr").run(meta, new_dsxy, new_dsz)
            ip = dog.run(chunk, offset, lb)
            peaks.append({"view_id": view_id, "interval_key": interval, "interest_points": ip["interest_points"],
                          "intensities": ip["intensities"], "peak_scores": ip["peak_scores"]})
        consolidated = AdvancedRefinement(peaks, p["combine_distance"], dataframes, area, max_interval,
                                          p["max_spots"]).run()
        PointsValidation(consolidated).run()
        SaveInterestPoints(dataframes, consolidated, cfg["xml"], cfg["out_xml"], cfg["store"], p["dsxy"], p["dsz"],
                           p["min_intensity"], p["max_intensity"], p["sigma"], p["threshold"]).run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_points = {k: len(v) for k, v in consolidated.items()}
    return {"wall_s": wall, "cpu_s": cpu, "tasks": len(chunks), "points": n_points,
            "total_points": sum(n_points.values())}


def match(cfg: dict) -> dict:
    from Rhapso.matching.generate_pairs import GeneratePairs
    from Rhapso.matching.load_and_transform_points import LoadAndTransformPoints
    from Rhapso.matching.ransac_matching import RansacMatching
    from Rhapso.matching.save_matches import SaveMatches
    from Rhapso.matching.xml_parser import XMLParserMatching

    p = cfg["params"]
    iterations = int(cfg.get("rhapso_iterations") or p["num_iterations"])
    t0, c0 = time.perf_counter(), time.process_time()
    ransac_s = 0.0
    pairs_ok = 0
    results = []
    with _Quiet():
        data_global = XMLParserMatching(cfg["xml"], "zarr").run()
        pairs, view_regs = GeneratePairs(data_global, p["match_type"]).run()
        for view_a, view_b, _sa, _sb, label in pairs:  # the pipeline's "# DEBUG MATCHING" loop
            loader = LoadAndTransformPoints(data_global, view_regs, label, cfg["store"])
            matcher = RansacMatching(
                data_global, p["num_neighbors"], p["redundancy"], p["significance"], p["num_required_neighbors"],
                p["match_type"], p["inlier_threshold"], p["min_inlier_ratio"], iterations,
                p["model_min_inliers"], p["regularization_weight"], p["search_radius"], view_regs, "zarr",
                cfg["image_prefix"], p["ransac_sample_size"])
            pa, pb, sa, sb = loader.run(view_a, view_b)
            pa, pb = matcher.filter_for_overlapping_points(pa, pb, sa, sb)
            if len(pa) == 0 or len(pb) == 0:
                continue
            cand = matcher.get_candidates(pa, pb, sa, sb, label)
            r0 = time.perf_counter()
            inliers, model = matcher.compute_ransac(cand)
            ransac_s += time.perf_counter() - r0
            filtered = matcher.filter_inliers(inliers, model)
            if len(filtered) < p["model_min_inliers"]:
                continue
            pairs_ok += 1
            results.extend(filtered)
        SaveMatches(results, cfg["store"], data_global, p["match_type"]).run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "ransac_s": ransac_s, "ransac_iterations": iterations,
            "pairs": len(pairs), "pairs_matched": pairs_ok, "matches": len(results)}


def solve(cfg: dict) -> dict:
    from Rhapso.pipelines.ray.solver import Solver

    p = cfg["params"]
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # its constructor makes an (unused) S3 client
    store = cfg["store"].rstrip("/") + "/"
    solver = Solver(
        xml_file_path_output=cfg["out_xml"], n5_input_path=store, xml_file_path=cfg["xml"],
        run_type=p["run_type"], relative_threshold=p["relative_threshold"],
        absolute_threshold=p["absolute_threshold"], max_cleanup_rounds=p.get("max_cleanup_rounds", 10),
        min_matches=p["min_matches"], damp=p["damp"], regularization_weight=p["regularization_weight"],
        max_iterations=p["max_iterations"], max_allowed_error=p["max_allowed_error"],
        max_plateauwidth=p["max_plateauwidth"], metrics_output_path=cfg.get("metrics", store + "metrics"),
        fixed_tile=p.get("fixed_tile"),
    )
    t0, c0 = time.perf_counter(), time.process_time()
    with _Quiet():
        solver.run()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def fuse(cfg: dict) -> dict:
    import numpy as np
    from Rhapso.affine_fusion.compute_bbox import ComputeBBox
    from Rhapso.affine_fusion.compute_grid import ComputeGrid
    from Rhapso.affine_fusion.fuse_cell import FuseCell
    from Rhapso.affine_fusion.generate_fusion_instructions import GenerateFusionInstructions
    from Rhapso.affine_fusion.initialize_output_zarr import InitializeOutputZarr
    from Rhapso.affine_fusion.overlapping_blocks import OverlappingBlocks
    from Rhapso.affine_fusion.overlapping_views import OverlappingViews

    p = cfg["params"]
    prefix = cfg["image_prefix"].rstrip("/")
    t0, c0 = time.perf_counter(), time.process_time()
    cells = 0
    with _Quiet():
        bb_min, bb_max, per_view = ComputeBBox(cfg["xml"], prefix).run()
        dims = (bb_max - bb_min) + 1
        # Blosc zstd 5 bitshuffle unless the config names another codec (the fusion-core
        # benchmark gives every tool the same one).
        InitializeOutputZarr(cfg["out"], prefix, dims, 2, p.get("compressor", "zstd"), int(p.get("clevel", 5)),
                             p.get("shuffle", "bitshuffle"), p["output_block_size"]).run()
        grid = ComputeGrid(dims, p["block_size"]).run()
        for grid_block in grid:  # the pipeline's "# ITERATIVE APPROACH" loop
            offset = grid_block[0] + bb_min
            views, fmin, fmax = OverlappingViews(offset, grid_block[1], per_view).run()
            if not views:
                continue
            blocks = OverlappingBlocks(per_view, views, offset, fmin, fmax, grid_block).run()
            if not any(blocks.values()):
                continue
            instr, blocks = GenerateFusionInstructions(per_view, grid_block, bb_min, bb_max, p["overlap_strategy"],
                                                       views).run()
            FuseCell(instr, blocks, per_view, cfg["out"], grid_block, bb_min, bb_max, p["overlap_strategy"]).run()
            cells += 1
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "cells": len(grid),
            "cells_fused": cells, "shape_xyz": [int(v) for v in np.asarray(dims)]}


def multiscale(cfg: dict) -> dict:
    import dask

    from Rhapso.pipelines.ray.multiscale import MultiScale

    import ray

    p = cfg["params"]
    dask.config.set(scheduler="synchronous")  # one core, as ours
    # Its PyramidExecutor submits blocks to Ray (starting a cluster on every core if none is
    # running); local mode runs them in this process, started before the clock.
    ray.init(local_mode=True, num_cpus=1, include_dashboard=False, log_to_driver=False)
    ms = MultiScale(zarr_path=cfg["out"], chunk_size=p["chunk_size"], voxel_size=p["voxel_size"], n_lvls=p["n_lvls"],
                    scale_factor=p["scale_factor"], base_level=0, compressor_cname="zstd", compressor_clevel=5,
                    compressor_shuffle="bitshuffle")
    t0, c0 = time.perf_counter(), time.process_time()
    with _Quiet():
        ms.run()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def grid_store(cfg: dict) -> dict:
    """Points and matches (an ``.npz``) into Rhapso's Parquet/JSON store, and the XML listing them."""
    import numpy as np
    import pandas as pd
    from Rhapso.detection.save_interest_points import SaveInterestPoints
    from Rhapso.matching.save_matches import SaveMatches

    d = np.load(cfg["npz"])
    views = [tuple(int(x) for x in v) for v in d["views"]]
    consolidated = {}
    for k, (tp, setup) in enumerate(views):
        pts = d[f"points_{k}"]
        consolidated[f"timepoint: {tp}, setup: {setup}"] = [(p, 0.0) for p in pts]
    loader = pd.DataFrame({"timepoint": [v[0] for v in views], "view_setup": [v[1] for v in views]})
    label = cfg.get("label", "beads")
    with _Quiet():
        saver = SaveInterestPoints({"image_loader": loader}, consolidated, cfg["xml"], cfg["out_xml"], cfg["store"],
                                   1, 1, 0, 1, 1.8, 0.008)
        saver.label = label
        saver.run()
        results = []
        links = d["links"]  # (L, 2) indices into views
        for li, (a, b) in enumerate(links):
            ia, ib = d[f"idx_a_{li}"], d[f"idx_b_{li}"]
            va = f"(tpId={views[a][0]}, setupId={views[a][1]})"
            vb = f"(tpId={views[b][0]}, setupId={views[b][1]})"
            results.extend((int(x), None, va, label, int(y), None, vb, label) for x, y in zip(ia, ib))
        dg = {"viewsInterestPoints": {v: {"label": label} for v in views}}
        SaveMatches(results, cfg["store"], dg, "affine").run()
    return {"views": len(views), "links": int(len(links)), "matches": len(results)}


STAGES = {"detect": detect, "match": match, "solve": solve, "fuse": fuse, "multiscale": multiscale,
          "grid_store": grid_store}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in STAGES:
        print(f"usage: rhapso_driver.py {{{','.join(STAGES)}}} CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[1]).read_text())
    out = STAGES[argv[0]](cfg)
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
