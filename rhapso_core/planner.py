"""What a dataset will cost, from its XML alone: tasks, memory, bytes and wall time per stage.

:func:`plan` reads a BigStitcher XML (no image data needed: sizes come from the
``ViewSetup``\\ s, positions from the registrations) and, for each stage of the
pipeline, counts the tasks the flows would submit, the memory each needs, the bytes
read and written, and predicts the wall time on ``cores`` cores from per-core
throughputs measured by ``bench/run_benchmarks.py`` (``bench/throughputs.json``;
conservative built-in defaults when that file is absent).

Task counts use the same planning code as the pipeline
(:func:`rhapso_core.pipeline.detect.detection_views` and
:func:`rhapso_core.detection.view.plan_detection` for detection chunks,
:func:`rhapso_core.pipeline.match.dataset_pairs` for pairs and
:func:`rhapso_core.cost.batch_pairs` for the batches a round submits,
:func:`rhapso_core.fusion.plan_work_units` for fusion), and memory per task is the
largest of the hints the flows give Ray (:mod:`rhapso_core.cost`) plus the worker
process's baseline; ``tests/planner/test_planner_vs_flows.py`` checks both against what
the flows submit. Matching memory follows the points detection finds: when ``points_store``
holds points of every paired view (a run into the same output folder, or detection done),
the planner sizes the batches from those counts with the flow's own function
(:func:`rhapso_core.cost.stored_batch_memory`), so the prediction is exact as long as
detection finds the same points; otherwise it applies the formula to its estimate of the
points and the matching row's note says so. The solve runs in the flow's process (nothing
is submitted to Ray): its memory is an estimate (:func:`rhapso_core.cost.solve_memory`), plus
the process's cache of decoded chunks (``runtime.read_cache_mb``), which its checks fill.
Phase-correlation rounds (``alignment.rounds: phase``, or the prealignment the resolution chooses)
are counted in the solve but their correlations are not costed, nor is the split-affine round.
``auto`` parameters are resolved by the pipeline's own resolution (:func:`rhapso_core.autoparams.resolve_parameters`):
from the images with ``read_pixels`` (what the flow does, so the plan is the run's), else from the XML alone.

Assumptions (the XML does not say them):

* pixels are uint16 (2 bytes);
* each view is stored with a factor-2 pyramid on every axis (OME-Zarr / N5 as
  written by the microscopes and by ``rhapso fuse``), so detection reads level
  ``k = min(log2 dsxy, log2 dsz)`` (``2**k`` per axis) and averages the rest in memory;
* every task's worker process holds about ``process_baseline_mb`` (interpreter,
  NumPy / Numba, Ray worker) on top of its arrays;
* a task's time is its compute (work / per-core throughput) plus its reads at
  ``read_mb_per_s_per_core`` (no overlap of the two: conservative), plus
  ``task_overhead_s`` of scheduling;
* tasks of a stage run in waves of ``concurrency`` = min(cores, tasks, total memory /
  memory per task); stages run one after another; alignment runs ``len(rounds)``
  match + solve rounds;
* point counts (where none are stored) follow ``points_per_mvoxel`` detections per million
  working voxels, capped by ``max_spots`` per region when set; a pair's matching time scales linearly
  with its points relative to ``matching_points_per_pair`` (the benchmark's pairs).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rhapso_core.cost import (
    batch_pairs,
    content_filter_taps,
    detection_chunk_memory,
    downsample_block_memory,
    fusion_unit_memory_from_sides,
    matching_batch_memory,
    output_itemsize,
    reserved_memory,
    solve_memory,
    stored_batch_memory,
)

__all__ = ["DEFAULT_THROUGHPUTS", "PlanReport", "StagePlan", "load_throughputs", "plan"]

BYTES_PER_VOXEL = 2  # uint16

#: The stages :func:`plan` costs, in pipeline order.
STAGES = ("detection", "matching", "solve", "fusion", "multiscale")

# Per core, deliberately on the slow side of what bench/run_benchmarks.py measured on a
# shared 2-core machine (see docs/benchmarks.md); the measured file replaces them.
DEFAULT_THROUGHPUTS: dict[str, float] = {
    "detection_working_voxels_per_s": 5.0e6,  # DoG on the downsampled grid, incl. read + downsample
    "matching_s_per_pair": 2.0,  # descriptors + 10,000 RANSAC iterations, one pair
    "solver_s_per_link": 0.05,  # iterative solve, per link (pair with matches)
    "fusion_voxels_per_s": 5.0e6,  # output voxels, avg_blend, 1-4 views per voxel
    # content_based's Gaussians, voxel-taps (rhapso_core.cost.content_filter_taps): about half
    # of the 4.8-4.9e9 bench/bench_content_weights.py prints ("Gtaps/s") on the 2-core machine
    "content_filter_taps_per_s": 2.0e9,
    "multiscale_voxels_per_s": 1.0e7,  # base-level voxels read per second
    "read_mb_per_s_per_core": 100.0,  # compressed chunk reads, local disk or S3
    "task_overhead_s": 0.5,  # Prefect + Ray scheduling per task
    "process_baseline_mb": 300.0,  # worker process before any array
    "points_per_mvoxel": 50.0,  # detections per million working voxels
    "matching_points_per_pair": 5000.0,  # points of both views in the pairs matching_s_per_pair was measured on
}

THROUGHPUTS_FILE = Path(__file__).resolve().parents[1] / "bench" / "throughputs.json"


#: What the predicted times leave out, said under every plan.
STARTUP_NOTE = ("not included: each run's fixed start-up (the Prefect API, starting or joining Ray, the workers' "
                "first imports), which does not grow with the data")


@dataclass(frozen=True)
class StagePlan:
    """One stage's cost.

    Attributes
    ----------
    stage : str
    tasks : int
        Tasks the flow submits (all rounds, for matching and solve).
    memory_per_task_bytes : float
        Largest task's resident memory (bytes), process baseline included.
    bytes_read, bytes_written : float
        Uncompressed bytes over the whole stage.
    cpu_seconds : float
        Total single-core work (s).
    wall_seconds : float
        Predicted wall time on the plan's cores (s).
    concurrency : int
        Tasks running at once (cores, tasks and memory permitting).
    note : str
    """

    stage: str
    tasks: int
    memory_per_task_bytes: float
    bytes_read: float
    bytes_written: float
    cpu_seconds: float
    wall_seconds: float
    concurrency: int
    note: str = ""


@dataclass(frozen=True)
class PlanReport:
    """The planner's answer for one dataset and cluster size."""

    xml: str
    cores: int
    memory_per_core_gb: float
    n_views: int
    input_bytes: float
    stages: tuple[StagePlan, ...]
    throughputs: dict[str, float] = field(default_factory=dict)
    throughput_source: str = "built-in defaults"
    price_per_core_hour: float | None = None

    @property
    def wall_seconds(self) -> float:
        return float(sum(s.wall_seconds for s in self.stages))

    @property
    def core_hours_held(self) -> float:
        """What a cluster bills: every core, for the whole predicted wall time."""
        return self.wall_seconds * self.cores / 3600.0

    @property
    def core_hours_busy(self) -> float:
        """The work itself (sum of the stages' single-core time); busy / held is the share spent computing."""
        return float(sum(s.cpu_seconds for s in self.stages)) / 3600.0

    @property
    def cost(self) -> float | None:
        """``core_hours_held * price_per_core_hour`` (the price's currency), or None without a price."""
        return None if self.price_per_core_hour is None else self.core_hours_held * self.price_per_core_hour

    def stage(self, name: str) -> StagePlan:
        for s in self.stages:
            if s.stage == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(wall_seconds=self.wall_seconds, core_hours_held=self.core_hours_held,
                 core_hours_busy=self.core_hours_busy, cost=self.cost, excludes=STARTUP_NOTE)
        return d

    def table(self) -> str:
        """Plain-text table, one row per stage plus the total."""
        head = (f"{'stage':<12}{'tasks':>9}{'mem/task':>10}{'read':>10}{'written':>10}{'cpu':>10}"
                f"{'parallel':>9}{'wall':>10}  note")
        lines = [
            f"plan for {self.xml}",
            f"{self.n_views} views, {_bytes(self.input_bytes)} (uint16); {self.cores} cores x "
            f"{self.memory_per_core_gb:g} GB; throughputs: {self.throughput_source}",
            head, "-" * len(head),
        ]
        for s in self.stages:
            lines.append(
                f"{s.stage:<12}{s.tasks:>9d}{_bytes(s.memory_per_task_bytes):>10}{_bytes(s.bytes_read):>10}"
                f"{_bytes(s.bytes_written):>10}{_dur(s.cpu_seconds):>10}{s.concurrency:>9d}"
                f"{_dur(s.wall_seconds):>10}  {s.note}"
            )
        lines.append(f"{'total':<12}{'':>9}{'':>10}{'':>10}{'':>10}"
                     f"{_dur(sum(s.cpu_seconds for s in self.stages)):>10}{'':>9}{_dur(self.wall_seconds):>10}")
        held, busy = self.core_hours_held, self.core_hours_busy
        cost = "" if self.cost is None else f"; at {self.price_per_core_hour:g} per core-hour: {self.cost:,.0f}"
        share = 100 * busy / held if held else 0.0
        lines.append(f"cluster time: {held:,.0f} core-hours held ({self.cores} cores x {_dur(self.wall_seconds)}), "
                     f"{busy:,.0f} of them computing ({share:.0f} %; the rest reading and scheduling){cost}")
        lines.append(STARTUP_NOTE)
        return "\n".join(lines)


def _bytes(n: float) -> str:
    for unit, k in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n:.0f} B"


def _dur(s: float) -> str:
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def load_throughputs(path: str | os.PathLike | None = None) -> tuple[dict[str, float], str]:
    """Built-in defaults overlaid with the benchmark's measured file (if present)."""
    out = dict(DEFAULT_THROUGHPUTS)
    p = Path(path) if path is not None else THROUGHPUTS_FILE
    if not p.is_file():
        return out, "built-in defaults"
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: not a throughputs JSON file ({exc})") from None
    used = {k: float(v) for k, v in data.items() if k in DEFAULT_THROUGHPUTS and isinstance(v, (int, float))}
    out.update(used)
    src = f"{p.name} ({data.get('measured_on', '?')} dataset, {data.get('date', '?')})" if used else "built-in defaults"
    return out, src


def _waves(tasks: int, cpu_per_task: float, io_per_task: float, mem_task: float, cores: int, mem_total: float,
           overhead: float) -> tuple[float, int]:
    """(wall seconds, concurrency) of ``tasks`` equal tasks."""
    if tasks <= 0:
        return 0.0, 0
    by_mem = max(1, int(mem_total // max(mem_task, 1.0)))
    conc = max(1, min(cores, tasks, by_mem))
    waves = math.ceil(tasks / conc)
    return waves * (cpu_per_task + io_per_task + overhead), conc


class _ShapeOnly:
    """An image source that knows its size only (the planner never reads pixels): ``n_levels``
    levels of a factor-2 pyramid, each ``ceil(size / 2**level)`` voxels."""

    dtype = np.dtype("uint16")

    def __init__(self, size_xyz, n_levels: int = 1):
        self._shape = tuple(int(n) for n in size_xyz[::-1])
        self.n_levels = int(n_levels)

    def level_factors(self, level: int):
        return (2**level,) * 3

    def level_shape(self, level: int):
        return tuple(-(-n // 2**level) for n in self._shape)

    def read(self, box, level: int = 0):
        raise RuntimeError("the planner does not read image data")


def _count_units(shape_zyx, f, write_unit_zyx) -> tuple[int, int, float]:
    """(work units, blocks, sides (z, y, x) of the largest block) of ``plan_work_units``, counted not listed.

    A 130 TB output has millions of blocks; listing them as the pipeline does (one task
    per unit, each a list of boxes) is what the flow needs, the count is all a plan needs.
    Blocks start every ``bs`` voxels (``block_size`` rounded up to whole write units);
    a unit gathers the blocks whose start falls in one cell of ``bs * block_scale``.
    """
    from rhapso_core.fusion.blocks import aligned_block_size

    bs = aligned_block_size(f.block_size[::-1], write_unit_zyx)
    units, blocks, biggest = 1, 1, []
    for n, b, s in zip(shape_zyx, bs, f.block_scale[::-1]):
        nb = -(-int(n) // int(b))
        blocks *= nb
        units *= -(-nb // int(s))
        biggest.append(min(int(b), int(n)))
    return units, blocks, tuple(biggest)


def _factor_level(ds: int) -> int:
    return max(0, int(math.floor(math.log2(max(1, ds)))))


def plan(
    xml_uri: str,
    cores: int,
    memory_per_core_gb: float,
    params=None,
    throughputs: dict | None = None,
    storage_options: dict | None = None,
    price_per_core_hour: float | None = None,
    stages: tuple[str, ...] | None = None,
    points_store: str | None = None,
    read_pixels: bool = False,
) -> PlanReport:
    """Cost of aligning and fusing the dataset of ``xml_uri`` on ``cores`` cores.

    Parameters
    ----------
    xml_uri : str
        BigStitcher XML (local path or ``s3://``); its image data need not exist.
    cores : int
        Cores of the (Ray) cluster, >= 1.
    memory_per_core_gb : float
        Memory per core (GB, 1e9 bytes), > 0.
    params : PipelineParams, optional
        Stage parameters (defaults: ``PipelineParams()``).
    throughputs : dict, optional
        Per-core throughputs overriding ``bench/throughputs.json`` and the built-in
        defaults (keys of :data:`DEFAULT_THROUGHPUTS`).
    storage_options : dict, optional
        fsspec options for an ``s3://`` XML.
    price_per_core_hour : float, optional
        Price of one core for one hour (any currency, e.g. an instance's hourly price /
        its vCPUs); the report then gives the cluster's cost for the predicted wall time.
    stages : tuple of str, optional
        Only these stages (of ``detection``, ``matching``, ``solve``, ``fusion``,
        ``multiscale``; default all); the alignment stages are planned together, so asking
        for one of them plans all three (and imports their modules), reporting those asked.
    points_store : str, optional
        The interest-point store the alignment will use (``interestpoints.zarr`` beside the
        aligned XML). Where it holds points (``detection.label``) of every paired view,
        matching memory per task comes from their counts, as the flow computes it; else it is
        estimated from the expected points (the matching row's note says which).
    read_pixels : bool
        Resolve ``auto`` parameters from the images, as the alignment flow does before its first
        stage (a few overlap crops and the coarsest pyramid levels are read), so detection's chunks
        and the rounds (a phase prealignment round, a 2-D mosaic's image-based start) are the
        flow's; where the images cannot be read, and by default, from the XML alone (the grid the
        overlaps allow, fallbacks for the rest): then they may differ from the run's.

    Returns
    -------
    PlanReport
        Per stage: tasks, memory per task, bytes read and written, CPU and wall time.
    """
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline.dataset import load_dataset, view_geometry

    wanted = set(STAGES if stages is None else stages)
    if not wanted or wanted - set(STAGES):
        raise ValueError(f"stages must be some of {STAGES}, got {stages!r}")

    if not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be a positive integer, got {cores!r}")
    if not memory_per_core_gb > 0:
        raise ValueError(f"memory_per_core_gb must be positive, got {memory_per_core_gb!r}")
    if price_per_core_hour is not None and not price_per_core_hour >= 0:
        raise ValueError(f"price_per_core_hour must be >= 0, got {price_per_core_hour!r}")
    p = params if params is not None else PipelineParams()
    tp, source = load_throughputs()
    if throughputs:
        unknown = sorted(set(throughputs) - set(DEFAULT_THROUGHPUTS))
        if unknown:
            raise ValueError(f"throughputs: unknown key(s) {unknown}; known: {sorted(DEFAULT_THROUGHPUTS)}")
        tp.update({k: float(v) for k, v in throughputs.items()})
        source = "given"
    mem_total = cores * memory_per_core_gb * 1e9
    base = tp["process_baseline_mb"] * 1e6
    overhead = tp["task_overhead_s"]
    read_bw = tp["read_mb_per_s_per_core"] * 1e6

    sd = load_dataset(xml_uri, storage_options)
    views = sd.views()
    geometry = view_geometry(sd)
    input_voxels = sum(float(np.prod(geometry[v][1])) for v in views)
    planned: list[StagePlan] = []
    if wanted & {"detection", "matching", "solve"}:
        planned += _plan_alignment(xml_uri, sd, geometry, p, tp, cores, mem_total, base, overhead, read_bw,
                                   storage_options, points_store, read_pixels)
    planned += _plan_fusion(sd, geometry, input_voxels, p, tp, cores, mem_total, base, overhead, read_bw)
    return PlanReport(
        xml=str(xml_uri), cores=cores, memory_per_core_gb=float(memory_per_core_gb), n_views=len(views),
        input_bytes=input_voxels * BYTES_PER_VOXEL, stages=tuple(s for s in planned if s.stage in wanted),
        throughputs=tp, throughput_source=source, price_per_core_hour=price_per_core_hour,
    )


def _stored_counts(points_store, label, views, storage_options) -> dict | None:
    """Points stored per view when ``points_store`` holds points of every one of ``views``, else None."""
    from rhapso_core.pipeline.match import stored_point_counts
    from rhapso_core.pointstore import PointStoreError

    if points_store is None or not views:
        return None
    try:
        counts = stored_point_counts(points_store, label, views, storage_options)
    except PointStoreError:  # no store there (yet)
        return None
    return counts if len(counts) == len(set(views)) else None


def _resolve(xml_uri, p, storage_options, read_pixels: bool) -> tuple[Any, list[str], str]:
    """``p`` with its ``auto`` values resolved as the alignment flow resolves them, the rounds it runs
    (a phase round first where it chooses prealignment) and how they were resolved ("" when nothing was auto).

    From the images (``read_pixels``; as ``flows.alignment.run_alignment`` does, so the plan is the
    flow's), falling back to the XML alone where they cannot be read.
    """
    from rhapso_core.autoparams import has_auto, resolve_parameters
    from rhapso_core.pipeline.prealign import alignment_rounds

    how = "auto values resolved from the images" if read_pixels else "auto values resolved from the XML alone"
    try:
        res = resolve_parameters(xml_uri, p, storage_options, read_pixels=read_pixels)
    except (OSError, ValueError) as exc:  # ImageIOError is a ValueError
        if not read_pixels:
            raise
        res = resolve_parameters(xml_uri, p, storage_options, read_pixels=False)
        how = f"auto values resolved from the XML alone (images unreadable: {str(exc).splitlines()[0][:120]})"
    if not has_auto(p):
        how = ""
    return res.params, alignment_rounds(res.params, res.prealignment), how


def _plan_alignment(xml_uri, sd, geometry, p, tp, cores, mem_total, base, overhead, read_bw,
                    storage_options, points_store, read_pixels) -> list[StagePlan]:
    """Detection, matching and solve (matching's cost follows detection's point counts)."""
    from rhapso_core.detection.view import chunk_halo, plan_detection
    from rhapso_core.pipeline.detect import detection_views, overlap_regions
    from rhapso_core.pipeline.match import dataset_pairs

    stages: list[StagePlan] = []

    # --- detection: one task per chunk of every region of every view -----------------------
    p, kinds, resolved_how = _resolve(xml_uri, p, storage_options, read_pixels)
    d = p.detection
    fz, fy, fx = d.factors_zyx()
    k = min(_factor_level(d.dsxy), _factor_level(d.dsz))
    # The pipeline's own planning (level choice, 2-D views, chunking) on a pixel-less source;
    # the intensity range is irrelevant to the chunks and would need pixels.
    d_plan = d.model_copy(update={"min_intensity": 0.0, "max_intensity": 1.0})
    n_tasks, n_regions, work_vox, read_vox, det_arrays = 0, 0, 0.0, 0.0, 0.0
    levels_seen = set()
    regions = overlap_regions(sd, geometry) if d.overlap_only else {}
    views = detection_views(sd, d, p.views)
    for v in views:
        vplan = plan_detection(_ShapeOnly(geometry[v][1], k + 1), d_plan, overlap_boxes_xyz=regions.get(v))
        halo = chunk_halo(vplan.params)
        m = np.asarray(vplan.in_memory_factor)
        levels_seen.add(vplan.level)
        n_regions += len({t.region_index for t in vplan.tasks})
        for t in vplan.tasks:
            n_tasks += 1
            ext = np.asarray([b - a for a, b in t.core_box], dtype=np.float64)
            work_vox += float(np.prod(ext))
            read_vox += float(np.prod(ext + 2 * np.asarray(halo)) * np.prod(m))
            det_arrays = max(det_arrays, detection_chunk_memory(t.core_box, halo))
    det_mem = base + reserved_memory(det_arrays)  # the flow's hint for its largest chunk, plus the worker process
    det_cpu = work_vox / tp["detection_working_voxels_per_s"]
    det_read = read_vox * BYTES_PER_VOXEL
    n_points = work_vox / 1e6 * tp["points_per_mvoxel"]
    if d.max_spots:
        n_points = min(n_points, float(d.max_spots) * n_regions)
    wall, conc = _waves(n_tasks, det_cpu / max(n_tasks, 1), det_read / max(n_tasks, 1) / read_bw, det_mem,
                        cores, mem_total, overhead)
    stages.append(StagePlan("detection", n_tasks, det_mem, det_read, n_points * 32, det_cpu, wall, conc,
                            f"pyramid level {'/'.join(map(str, sorted(levels_seen))) or k} + in memory to x {fx}, z {fz}"
                            f"{'; ' + resolved_how if resolved_how else ''}"))

    # --- matching: a few batches of pairs per worker slot, per point-matching round -----------
    rounds = sum(1 for r in kinds if r != "phase")
    a = p.alignment
    # The pairs the flow's first round matches (later rounds pair by the registrations they refine).
    pairs = dataset_pairs(sd, a.pair_mode, list(a.group_by), grouping=a.grouping, timepoints=a.timepoints,
                          reference_timepoint=a.reference_timepoint, timepoint_range=a.timepoint_range,
                          selection=p.views, channels=d.channels)
    n_pairs = len(pairs)
    # Inside a Ray session the flows' worker slots are the cluster's CPUs: ``cores``.
    batches = batch_pairs(pairs, cores)
    n_batches = len(batches)
    counts = _stored_counts(points_store, d.label, [v for pair in pairs for v in pair], storage_options)
    if counts is not None:
        # The flow's hint for each batch, from the same stored counts, plus the worker process.
        match_mem = base + reserved_memory(max((stored_batch_memory(b, counts) for b in batches), default=0.0))
        pts_per_view = sum(counts.values()) / len(counts)
        points_note = f"memory from the points stored in {points_store}"
    else:
        pts_per_view = n_points / max(len(views), 1)
        # The flow's hint for a batch of pairs of views with the estimated points, plus the worker process.
        match_mem = base + reserved_memory(matching_batch_memory([(pts_per_view, pts_per_view)]))
        points_note = (f"memory estimated from {pts_per_view:,.0f} points per view "
                       f"({tp['points_per_mvoxel']:.3g} per working Mvoxel"
                       f"{', capped by max_spots' if d.max_spots else ''}"
                       f"{'; none stored in ' + str(points_store) if points_store else ''})")
    s_pair = tp["matching_s_per_pair"] * max(1.0, 2 * pts_per_view / tp["matching_points_per_pair"])
    match_cpu = rounds * n_pairs * s_pair
    match_read = rounds * n_pairs * 2 * pts_per_view * 32
    per_batch = n_pairs / max(n_batches, 1)
    wall, conc = _waves(rounds * n_batches, s_pair * per_batch, per_batch * 2 * pts_per_view * 32 / read_bw,
                        match_mem, cores, mem_total, overhead)
    stages.append(StagePlan("matching", rounds * n_batches, match_mem, match_read, match_read / 4, match_cpu, wall,
                            conc, f"{n_pairs} overlapping pairs in {n_batches} batches x {rounds} rounds; "
                            f"{points_note}"))

    # --- solve: one task per round (phase rounds solve too) -----------------------------------
    rounds = len(kinds)
    solve_cpu = rounds * n_pairs * tp["solver_s_per_link"]
    # and the flow process's cache of decoded chunks, which its after-solve checks fill
    solve_mem = base + solve_memory(n_pairs, len(views)) + p.runtime.read_cache_mb * 1024**2
    wall = rounds * (n_pairs * tp["solver_s_per_link"] + overhead)
    phase = (f"; rounds {', '.join(kinds)} (a phase round's correlations are not costed)" if "phase" in kinds
             else "")
    stages.append(StagePlan("solve", rounds, solve_mem, match_read / 4, len(views) * 2048, solve_cpu, wall,
                            1 if n_pairs else 0, f"{len(views)} views, <= {n_pairs} links per round; in the flow's "
                            f"process (memory estimated){phase}"))
    return stages


def _plan_fusion(sd, geometry, input_voxels, p, tp, cores, mem_total, base, overhead, read_bw) -> list[StagePlan]:
    """Fusion and its multiscale pyramid."""
    from rhapso_core.fusion import FusionView, make_output_grid
    from rhapso_core.fusion.blocks import aligned_block_size
    from rhapso_core.multiscale.downsample import plan_level_blocks
    from rhapso_core.multiscale.pyramid import level_plan
    from rhapso_core.pipeline.fuse import default_voxel_size_world, fusion_slots, physical_unit_per_world, select_views

    stages: list[StagePlan] = []

    # --- fusion: one task per work unit of chunk-aligned blocks ------------------------------
    f = p.fusion
    fviews_ids = select_views(sd)
    fviews = [FusionView(_ShapeOnly(geometry[v][1]), geometry[v][0], geometry[v][1], v) for v in fviews_ids]
    per_world, _unit = physical_unit_per_world(sd, fviews_ids)
    voxel = f.voxel_size or default_voxel_size_world(sd, fviews_ids, per_world, f.isotropic)
    bbox = None if f.bounding_box is None else (f.bounding_box[0], f.bounding_box[1])
    grid = make_output_grid(fviews, voxel, bbox, f.isotropic)
    write_unit_zyx = tuple((f.shards or f.chunks)[::-1])
    units_n, blocks_n, max_block_sides = _count_units(grid.shape_zyx, f, write_unit_zyx)
    # One fused image per (timepoint, channel) on the same grid (rhapso_core.pipeline.fuse.fusion_slots).
    slots = fusion_slots(sd, fviews_ids)
    n_slots = max(len(slots), 1)
    out_vox = float(np.prod(grid.shape_zyx)) * n_slots
    # The flow's hint for its largest unit (blocks one after another, content_based's view by view).
    unit_sides = [min(int(n), int(b) * int(s)) for n, b, s in
                  zip(grid.shape_zyx, aligned_block_size(f.block_size[::-1], write_unit_zyx), f.block_scale[::-1])]
    fuse_mem = base + reserved_memory(fusion_unit_memory_from_sides(max_block_sides, unit_sides, f))
    scale = float(np.prod(grid.voxel_size_xyz)) / max(
        float(np.mean([np.prod(np.linalg.norm(geometry[v][0][:3, :3], axis=0)) for v in fviews_ids])), 1e-12)
    fuse_read = min(input_voxels, out_vox * scale * 1.2) * BYTES_PER_VOXEL  # inputs under the grid (+20 % halo)
    fuse_cpu = out_vox / tp["fusion_voxels_per_s"]
    if f.overlap_strategy == "content_based":  # the weights' filters, on top of the sampling
        fuse_cpu += content_filter_taps(fviews, grid, f, unit_sides) * n_slots / tp["content_filter_taps_per_s"]
    n_units = units_n * n_slots
    wall, conc = _waves(n_units, fuse_cpu / max(n_units, 1), fuse_read / max(n_units, 1) / read_bw, fuse_mem,
                        cores, mem_total, overhead)
    stages.append(StagePlan("fusion", n_units, fuse_mem, fuse_read, out_vox * BYTES_PER_VOXEL, fuse_cpu, wall, conc,
                            f"output {grid.shape_zyx[2]} x {grid.shape_zyx[1]} x {grid.shape_zyx[0]} (x y z), "
                            f"{blocks_n} blocks"))

    # --- multiscale: one task per whole-chunk block of each level, level after level -----------
    levels = level_plan("0", grid.shape_zyx, f.multiscale)
    ms_vox = float(sum(np.prod(s) for _, s, _, _ in levels)) * n_slots
    ms_read = out_vox + ms_vox - (float(np.prod(levels[-1][1])) * n_slots if levels else 0.0)
    ms_cpu = ms_read / tp["multiscale_voxels_per_s"]
    ms_tasks, ms_wall, ms_mem = 0, 0.0, base
    src_vox = out_vox
    itemsize = output_itemsize(f.output_dtype)
    for _, shape, factor, _ in levels:
        unit = tuple(min(c, n) for c, n in zip(f.multiscale.multiscale_chunk_size, shape))
        blocks = plan_level_blocks(shape, unit, factor, BYTES_PER_VOXEL, f.multiscale.target_block_size_mb)
        n_blocks = len(blocks)
        lvl_cpu = src_vox / tp["multiscale_voxels_per_s"]
        # the flow's hint for the level's largest block, plus the worker process
        task_mem = base + reserved_memory(max(downsample_block_memory(b, factor, itemsize) for b in blocks))
        w, _ = _waves(n_blocks, lvl_cpu / n_blocks, src_vox * BYTES_PER_VOXEL / n_blocks / read_bw, task_mem,
                      cores, mem_total, overhead)
        ms_tasks, ms_wall, ms_mem = ms_tasks + n_blocks, ms_wall + w, max(ms_mem, task_mem)
        src_vox = float(np.prod(shape)) * n_slots
    stages.append(StagePlan("multiscale", ms_tasks, ms_mem, ms_read * BYTES_PER_VOXEL, ms_vox * BYTES_PER_VOXEL,
                            ms_cpu, ms_wall, min(cores, max(ms_tasks, 1)),
                            f"{len(levels)} levels, one task per block, a level after the one it reads"))
    return stages
