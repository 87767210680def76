"""Fusion core and pyramid speed per core, split by phase, beside scipy (issue 21).

One run prints, for one generated dataset (default: 3 x 2 x 1 uint16 tiles of
256 x 256 x 96 voxels (x, y, z), 15 % overlap, small rotations in xy, written as zarr
with 64^3 zstd chunks, fused with the pipeline's defaults: blocks of 256^3, output
chunks 128^3, the project's OME-Zarr writer and codec):

1. **fusion**: output voxels / s / core of :func:`rhapso_core.fusion.fuse_to_zarr`, split
   into *read + decode* (the views' ``read`` calls, through the project's zarr reader
   :func:`rhapso_core.io.zarr_source.image_from_zarr`), *sample* (the sampling kernel),
   *other* (box planning, finalize to the output dtype) and *encode + write* (the zarr
   write and block markers); once as today (current kernel
   :mod:`rhapso_core.fusion.row_kernels`, direct chunk I/O and chunk reuse across a work
   unit's blocks, :mod:`rhapso_core.io.chunk_io`) and once as before issue 21 (reference
   kernel :func:`rhapso_core.fusion.kernels.accumulate_view`, blosc zstd 5, every read and
   write through zarr), whose outputs must be equal;
2. **scipy**: ``scipy.ndimage.affine_transform(order=1)`` of each view onto an output box
   inside it (every output voxel sampled, none blended): output voxels / s / core; and the
   **codecs alone**: every input chunk decoded once with the input's codec and every output
   chunk encoded once with the output's, the least any fusion reads and writes, beside the
   time 5x scipy allows;
3. **pyramid**: the steps of :func:`rhapso_core.multiscale.build_pyramid` (5 levels of
   2 x 2 x 2) on the fused image: as today, with reads and writes through zarr instead of
   the direct chunk I/O, and on the previous codec: level-0 voxels / s / core of the
   downsampling (what its tasks do per voxel) and of the whole step including the one-off
   creation of the level arrays, with the mean kernel alone beside them;
4. **codecs** (``--codecs``): size and encode / decode speed of the fused chunks under
   blosc zstd / lz4 at a few levels;
5. peak resident memory of the process (``VmHWM``);
6. **peers** (``--peers``): Rhapso 0.4.5 and multiview-stitcher fusing the same tiles with the
   same poses onto the same output grid, same output chunks and codec, each in a fresh process
   of its own virtual environment, one thread (``bench/peer_fusion.py`` says exactly which of
   their modes runs and how it differs from ours): wall and CPU seconds of their fusion call,
   output voxels / CPU s, ours / theirs, and how closely each output matches ours (NCC, mean
   and max absolute difference over the voxels both cover). With ``--peers`` every
   contender, ours included, fuses onto the grid Rhapso derives from an XML (one world unit
   per voxel, the views' box widened to whole units, :func:`peer_grid`).

Every figure is the fastest of ``--repeat`` runs (per phase), in CPU time of this one process with one thread (``NUMBA_NUM_THREADS=1``,
zarr's codec pipeline runs in this process's threads and is counted), so it is per core.
``--rotate DEG`` rotates every tile by DEG about a tilted axis (worst case: no axis-
aligned rows, every voxel of the 96-voxel-deep tiles in some blending ramp);
``--strategy`` picks the overlap strategy.

Usage::

    python bench/bench_fusion_core.py                 # about a minute on 2 cores
    python bench/bench_fusion_core.py --rotate 20 --codecs
    python bench/bench_fusion_core.py --peers         # + Rhapso 0.4.5 and multiview-stitcher
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_fusion as bf  # noqa: E402
import peer_fusion as pf  # noqa: E402
import rhapso_core.fusion.fuse as fuse_mod  # noqa: E402
from rhapso_core import transforms as tf  # noqa: E402
from rhapso_core.fusion import FusionParams, fuse_to_zarr, make_output_grid, output_to_view, plan_work_units, write_unit  # noqa: E402
from rhapso_core.fusion.kernels import accumulate_view  # noqa: E402
from rhapso_core.io import create_ome_zarr  # noqa: E402
from rhapso_core.io.chunk_io import general_path_only  # noqa: E402
from rhapso_core.io.zarr_source import image_from_zarr  # noqa: E402
from rhapso_core.io.downsample import downsample_mean  # noqa: E402
from rhapso_core.multiscale import MultiscaleParams  # noqa: E402
from rhapso_core.multiscale.pyramid import downsample_blocks, finish_levels, prepare_levels  # noqa: E402


class Clock:
    """CPU seconds spent inside wrapped calls (not re-entrant; the wrapped calls never nest)."""

    def __init__(self):
        self.t = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            t0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.t += time.process_time() - t0
        return timed


def load_views(root: Path):
    """The dataset's views read by the project's zarr reader (what the pipeline's fusion
    reads through), not bench_fusion's minimal one."""
    from dataclasses import replace

    return [replace(v, source=image_from_zarr(zarr.open_group(str(v.source.levels[0].store.root), mode="r"),
                                              uri=str(v.source.levels[0].store.root)))
            for v in bf.load_views(root)]


def rotate_views(views, deg: float):
    """Rotate each view by ``deg`` about a tilted axis through its centre (worst case)."""
    if not deg:
        return views
    axis = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
    a = np.deg2rad(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(4)
    rot[:3, :3] = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k
    out = []
    for v in views:
        c = (np.asarray(v.size_xyz, np.float64) - 1) / 2
        pose = v.view_to_world @ tf.translation(c) @ rot @ tf.translation(-c)
        out.append(type(v)(v.source, pose, v.size_xyz, v.view_id))
    return out


def fuse_timed(views, grid, params, out_uri: Path, kernel, compressor: str, clevel: int,
               general: bool = False) -> dict:
    """Fuse every work unit into a fresh OME-Zarr (blosc ``compressor`` at ``clevel``, bitshuffle);
    CPU time per phase. ``general``: every read and write through zarr (as before issue 21's
    direct chunk I/O and chunk reuse)."""
    if general:
        with general_path_only():
            return fuse_timed(views, grid, params, out_uri, kernel, compressor, clevel)
    writer = create_ome_zarr(str(out_uri), grid.shape_zyx, params.output_dtype,
                             chunks_zyx=tuple(params.chunks[::-1]), voxel_size_zyx=(1.0, 1.0, 1.0),
                             overwrite=True, compressor=compressor, clevel=clevel)
    arr = writer.slot(0)
    units = plan_work_units(grid.shape_zyx, params, write_unit(arr))
    read, sample, block = Clock(), Clock(), Clock()
    saved_reads = [(v.source, v.source.read) for v in views]
    saved_kernel, saved_fuse = fuse_mod._accumulate, fuse_mod.fuse_block
    import rhapso_core.fusion.writer as writer_mod
    saved_writer_fuse = writer_mod.fuse_block
    # content_based units fuse view by view (fuse_unit_float), then finish each block.
    saved_unit, saved_finish = writer_mod.fuse_unit_float, writer_mod.finish_block
    try:
        for src, fn in saved_reads:
            src.read = read.wrap(fn)
        fuse_mod._accumulate = sample.wrap(kernel)
        writer_mod.fuse_block = block.wrap(saved_fuse)
        writer_mod.fuse_unit_float = block.wrap(saved_unit)
        writer_mod.finish_block = block.wrap(saved_finish)
        t0, w0 = time.process_time(), time.perf_counter()
        for unit in units:
            fuse_to_zarr(views, grid, params, arr, blocks=unit, skip_existing=False)
        total, wall = time.process_time() - t0, time.perf_counter() - w0
    finally:
        for src, _ in saved_reads:
            del src.read
        fuse_mod._accumulate = saved_kernel
        writer_mod.fuse_block = saved_writer_fuse
        writer_mod.fuse_unit_float, writer_mod.finish_block = saved_unit, saved_finish
    return {"total": total, "wall": wall, "read": read.t, "sample": sample.t,
            "other": block.t - read.t - sample.t, "write": total - block.t, "array": arr}


def scipy_rate(views, grid, reps: int = 1) -> float:
    """Output voxels / CPU s of affine_transform(order=1), uint16 -> uint16, each view onto a
    box of its own size shrunk by 4 voxels per side (all output voxels inside the view)."""
    n, t = 0, 0.0
    swap = np.eye(4)[[2, 1, 0, 3]]  # (x, y, z) <-> (z, y, x)
    for v in views:
        src = np.asarray(v.source.read(tuple((0, s) for s in v.size_xyz[::-1]), 0))
        m = swap @ output_to_view(grid, v) @ swap
        shape = tuple(s - 8 for s in v.size_xyz[::-1])
        # Output box origin: the view's centre mapped to the output grid, minus half the box.
        centre_out = np.linalg.solve(m[:3, :3], (np.asarray(src.shape) - 1) / 2 - m[:3, 3])
        start = np.round(centre_out - (np.asarray(shape) - 1) / 2)
        offset = m[:3, :3] @ start + m[:3, 3]
        for _ in range(reps):
            t0 = time.process_time()
            ndimage.affine_transform(src, m[:3, :3], offset, output_shape=shape, order=1,
                                     output=np.uint16, mode="nearest")
            t += time.process_time() - t0
            n += int(np.prod(shape))
    return n / t


def codec_floor(views, out_array) -> dict:
    """CPU seconds of the codecs alone, one thread: every input chunk decoded once (the input's own
    codec, as the direct chunk reader decodes it) and every output chunk encoded once (the output's
    codec). No fusion reads or writes less than that, so these bound the whole fusion from below."""
    import itertools

    from rhapso_core.io.chunk_io import direct_chunks

    def chunks(dc):
        return itertools.product(*(range(-(-n // c)) for n, c in zip(dc.shape, dc.chunks)))

    decode = encode = 0.0
    for v in views:
        dc = direct_chunks(v.source.levels[0].array)
        buf = np.empty(dc.chunks, dc.dtype)
        for idx in chunks(dc):
            raw = dc.read_chunk_bytes(idx)
            if raw is None:
                continue
            t0 = time.process_time()
            dc.decode(raw, out=buf)
            decode += time.process_time() - t0
    dc = direct_chunks(out_array)
    for idx in chunks(dc):
        raw = dc.read_chunk_bytes(idx)
        if raw is None:
            continue
        chunk = dc.decode(raw)
        t0 = time.process_time()
        dc.encode(chunk)
        encode += time.process_time() - t0
    return {"decode": decode, "encode": encode}


def pyramid_timed(out_uri: Path, general: bool = False) -> dict:
    """build_pyramid's three steps timed apart: creating the level arrays (once per run),
    downsampling (per voxel: read + decode, mean, encode + write) and the metadata.
    ``general``: reads and writes through zarr (as before the direct chunk I/O)."""
    if general:
        with general_path_only():
            return pyramid_timed(out_uri)
    group = zarr.open_group(str(out_uri), mode="a")
    n0 = int(np.prod(group["0"].shape))
    mp = MultiscaleParams(n_lvls=5)
    t0 = time.process_time()
    base, work = prepare_levels(group, mp, skip_existing=False)
    t1 = time.process_time()
    for level in work:
        downsample_blocks(group, level, skip_existing=False)
    t2 = time.process_time()
    finish_levels(group, base, work)
    t3 = time.process_time()
    block = np.asarray(group["0"][tuple(slice(0, min(128, s)) for s in group["0"].shape)])
    downsample_mean(block, (2, 2, 2))
    t0k = time.process_time()
    for _ in range(5):
        downsample_mean(block, (2, 2, 2))
    kernel = 5 * block.size / (time.process_time() - t0k)
    return {"total": t3 - t0, "setup": (t1 - t0) + (t3 - t2), "downsample": t2 - t1, "voxels": n0,
            "kernel_rate": kernel}


def codec_table(arr) -> list[tuple[str, float, float, float]]:
    import numcodecs

    chunks = [np.ascontiguousarray(arr[tuple(slice(a, a + c) for a, c in zip(start, arr.chunks))])
              for start in [(0, 0, 0), (0, 128, 128), (0, 256, 256)]]
    raw = sum(c.nbytes for c in chunks)
    rows = []
    for name, codec in [
        ("blosc zstd 5 bitshuffle (before)", numcodecs.Blosc("zstd", 5, numcodecs.Blosc.BITSHUFFLE)),
        ("blosc zstd 3 bitshuffle", numcodecs.Blosc("zstd", 3, numcodecs.Blosc.BITSHUFFLE)),
        ("blosc zstd 1 bitshuffle", numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE)),
        ("blosc zstd 1 shuffle", numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE)),
        ("blosc lz4 5 bitshuffle", numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE)),
        ("blosc lz4 5 shuffle", numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)),
    ]:
        numcodecs.blosc.set_nthreads(1)
        t0 = time.process_time()
        enc = [codec.encode(c) for c in chunks]
        te = time.process_time() - t0
        t0 = time.process_time()
        for e in enc:
            codec.decode(e)
        td = time.process_time() - t0
        rows.append((name, raw / sum(len(e) for e in enc), raw / te / 2**20, raw / td / 2**20))
    return rows


def peak_rss_mb() -> float:
    return bf.peak_rss_mb()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile", type=int, nargs=3, default=(256, 256, 96), metavar=("X", "Y", "Z"))
    ap.add_argument("--grid", type=int, nargs=3, default=(3, 2, 1), metavar=("X", "Y", "Z"))
    ap.add_argument("--rotate", type=float, default=0.0, help="extra rotation of every tile (degrees)")
    ap.add_argument("--strategy", default="avg_blend")
    ap.add_argument("--codecs", action="store_true", help="also print the codec table")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts (default 3)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--peers", nargs="?", const=",".join(pf.PEERS), metavar="TOOLS",
                    help=f"also fuse with the peers ({','.join(pf.PEERS)}; default both) in their venvs")
    a = ap.parse_args(argv)
    peers = pf.parse_tools(a.peers) if a.peers else ()
    if peers:
        pf.check_strategy(a.strategy)
    with tempfile.TemporaryDirectory(prefix="bench_fusion_core_") as tmp:
        tmp = Path(tmp)
        bf.make_dataset(tmp / "ds", tuple(a.grid), tuple(a.tile))
        views = rotate_views(load_views(tmp / "ds"), a.rotate)
        params = FusionParams(overlap_strategy=a.strategy)
        grid = pf.peer_grid(views) if peers else make_output_grid(views)
        nvox = int(np.prod(grid.shape_zyx))
        n_in = sum(int(np.prod(v.size_xyz)) for v in views)
        print(f"dataset: {a.grid[0]} x {a.grid[1]} x {a.grid[2]} tiles of {tuple(a.tile)} (x, y, z) uint16, "
              f"rotation {a.rotate} deg, {n_in / 1e6:.1f} Mvox in; output {grid.shape_zyx} (z, y, x) = "
              f"{nvox / 1e6:.1f} Mvox, {a.strategy}, blocks {params.block_size}, chunks {params.chunks}")
        # Warm-up: numba's compiled kernels come from the on-disk cache (or compile once here).
        # "new": today's kernel, FusionParams' codec and the direct chunk I/O; "ref": the
        # reference kernel, the codec fusion used before (blosc zstd 5) and zarr's own read
        # and write path, i.e. the fusion of issue 21's starting point.
        new_args = (fuse_mod.accumulate_view_rows, params.compressor, params.clevel)
        ref_args = (accumulate_view, "zstd", 5, True)
        fuse_timed(views, grid, params, tmp / "warm.zarr", *new_args)
        fuse_timed(views, grid, params, tmp / "warm.zarr", *ref_args)
        # The machine is shared: alternate the two, keep each phase's fastest of --repeat runs.
        new, ref = {}, {}
        for _ in range(a.repeat):
            for best, args, uri in ((new, new_args, "new.zarr"), (ref, ref_args, "ref.zarr")):
                r = fuse_timed(views, grid, params, tmp / uri, *args)
                for k, v in r.items():
                    best[k] = v if k == "array" else min(best.get(k, np.inf), v)
        fused = new["array"][...]
        same = np.array_equal(fused, ref["array"][...])
        # Tiles hold values >= 200 (bench_fusion.make_dataset), so nonzero == covered by a view.
        covered = int(np.count_nonzero(fused))
        del fused
        sp = max(scipy_rate(views, grid) for _ in range(a.repeat))
        print(f"\nfusion, Mvox/s per core (output voxels / CPU s of each phase; 'core' = read+sample+other)")
        print(f"{'kernel':<22}{'read+decode':>13}{'sample':>9}{'other':>8}{'encode+write':>14}"
              f"{'core':>8}{'total':>8}{'total s':>9}")
        for name, r in ((f"new, blosc {params.compressor} {params.clevel}", new), ("before, blosc zstd 5", ref)):
            core = r["read"] + r["sample"] + r["other"]
            print(f"{name:<22}{nvox / r['read'] / 1e6:>13.0f}{nvox / r['sample'] / 1e6:>9.0f}"
                  f"{nvox / r['other'] / 1e6:>8.0f}{nvox / r['write'] / 1e6:>14.0f}"
                  f"{nvox / core / 1e6:>8.1f}{nvox / r['total'] / 1e6:>8.1f}{r['total']:>9.2f}")
        core_new = nvox / (new["read"] + new["sample"] + new["other"])
        print(f"outputs identical: {same}; covered output voxels {covered / 1e6:.1f} M ({covered / nvox:.0%}); "
              f"per covered voxel: sample {covered / new['sample'] / 1e6:.0f}, core "
              f"{covered / (new['read'] + new['sample'] + new['other']) / 1e6:.1f}, total "
              f"{covered / new['total'] / 1e6:.1f} Mvox/s (before: {covered / ref['sample'] / 1e6:.0f}, "
              f"{covered / (ref['read'] + ref['sample'] + ref['other']) / 1e6:.1f}, {covered / ref['total'] / 1e6:.1f})")
        core_cov = covered / (new["read"] + new["sample"] + new["other"])
        print(f"scipy affine_transform order 1 (one view, no blending, uint16, every voxel inside): "
              f"{sp / 1e6:.1f} Mvox/s per core; per covered voxel: fusion core / scipy = {core_cov / sp:.2f}x, "
              f"whole fusion / scipy = {covered / new['total'] / sp:.2f}x, sample phase / scipy = "
              f"{covered / new['sample'] / sp:.2f}x")
        floor = min((codec_floor(views, new["array"]) for _ in range(a.repeat)),
                    key=lambda f: f["decode"] + f["encode"])
        codec_s = floor["decode"] + floor["encode"]
        budget = nvox / (5 * sp)
        print(f"codecs alone, one thread (each input chunk decoded once, each output chunk encoded once): "
              f"decode {floor['decode']:.3f} s + encode {floor['encode']:.3f} s = {codec_s:.3f} s, "
              f"{nvox / codec_s / 1e6:.0f} Mvox/s per output voxel; 5x scipy per output voxel allows {budget:.3f} s, "
              f"of which the codecs alone take {codec_s / budget:.0%} (decoding alone {floor['decode'] / budget:.0%}; "
              f"this fusion: whole {new['total']:.3f} s, core {new['read'] + new['sample'] + new['other']:.3f} s, "
              f"sample phase {new['sample']:.3f} s)")
        peer_res = None
        if peers:
            peer_res = pf.compare(peers, tmp / "ds", views, grid, params, new["array"], new["total"], new["wall"],
                                  sp, tmp / "peers")
        pyr, pyr_gen, pyr_ref = [], [], []
        for _ in range(a.repeat):  # alternated, as above
            pyr.append(pyramid_timed(tmp / "new.zarr"))
            pyr_gen.append(pyramid_timed(tmp / "new.zarr", general=True))
            pyr_ref.append(pyramid_timed(tmp / "ref.zarr"))
        pyr, pyr_gen, pyr_ref = (min(r, key=lambda r: r["total"]) for r in (pyr, pyr_gen, pyr_ref))
        print(f"\npyramid (5 levels of 2x2x2 from the fused zarr), Mvox/s per core (level-0 voxels / CPU s):")
        for name, r in ((f"new, blosc {params.compressor} {params.clevel}", pyr),
                        (f"zarr's read/write, {params.compressor} {params.clevel}", pyr_gen),
                        ("on a blosc zstd 5 output", pyr_ref)):
            print(f"  {name:<26} downsample (read+mean+write) {r['voxels'] / r['downsample'] / 1e6:>5.0f}"
                  f"   with level creation and metadata {r['voxels'] / r['total'] / 1e6:>5.0f}"
                  f"   (setup {r['setup']:.2f} s)")
        print(f"  mean kernel alone (2x2x2 on a 128^3 uint16 block): {pyr['kernel_rate'] / 1e6:.0f} Mvox/s")
        codecs = None
        if a.codecs:
            codecs = codec_table(new["array"])
            print(f"\ncodecs on fused uint16 chunks (one thread): {'ratio':>7}{'enc MB/s':>10}{'dec MB/s':>10}")
            for name, ratio, enc, dec in codecs:
                print(f"  {name:<40}{ratio:>7.2f}{enc:>10.0f}{dec:>10.0f}")
        print(f"\npeak RSS of this process: {peak_rss_mb():.0f} MB")
        if a.json:
            res = {k: {kk: vv for kk, vv in r.items() if kk != "array"} for k, r in (("new", new), ("ref", ref))}
            a.json.write_text(json.dumps({"nvox": nvox, "fusion": res, "scipy": sp, "pyramid": pyr, "pyramid_general_path": pyr_gen, "pyramid_zstd5": pyr_ref,
                                          "identical": bool(same), "covered": covered, "codecs": codecs, "codec_floor": floor,
                                          "peers": peer_res,
                                          "peak_rss_mb": peak_rss_mb()}, indent=1))


if __name__ == "__main__":
    main()
