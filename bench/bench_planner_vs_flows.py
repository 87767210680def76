"""``rhapso plan`` against what the flows submit, on the benchmark datasets (not timed).

For each dataset the planner is asked first (as ``rhapso plan`` is, with the same parameters,
``auto`` values resolved from the images as the flow resolves them), then the stage flows' bodies run as the alignment and fusion flows call them
(``.fn``: no Prefect API, no Ray), with every task they ``.submit`` recorded together with the
Ray memory hint in force (:func:`recording`). Per stage the table gives the tasks planned and
submitted and the memory per task planned and reserved (the largest hint plus the planner's
worker-process baseline). Tolerance: none, except matching memory planned before detection,
which is an estimate from the points the planner expects (the plan says so): the table shows it
beside the exact figure the planner gives once detection has stored its points.

What runs for real: parameter resolution (``auto`` values from the pixels, as
``flows.alignment.run_alignment`` does), the planning tasks, and, unless ``--stub-detection``,
the DoG (so matching's hints follow the points detection really finds). Matching, fusion and
downsampling return fixed results: what they compute is measured by the other benchmarks.
Pair retries, phase links and image checks are off: they depend on match outcomes the planner
cannot know. Phase rounds (a prealignment the resolution chooses) are not costed by the planner
and not run here; their solve is counted.

Datasets: the accuracy matrix's cells (``bench/bench_accuracy.py``; real-texture cells need
``../shared/fixtures/real``), the end-to-end benchmark's (``bench/run_benchmarks.py``, default
``small``) and the fusion-overhead benchmark's (``bench/bench_overhead.py``: ``SyntheticParams``
defaults on a 3 x 2 x 1 grid).

    python bench/bench_planner_vs_flows.py                       # every accuracy cell, small, overhead
    python bench/bench_planner_vs_flows.py --cells base,real-ch0 --sizes small,real
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

CORES = 16
MEMORY_PER_CORE_GB = 4.0


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class _Recorder:
    """Stands in for a Prefect task: ``.submit`` runs ``run`` at once and logs (name, Ray memory hint)."""

    def __init__(self, log: list, name: str, run):
        self.log, self.name, self.run = log, name, run

    def submit(self, *args, **kwargs):
        from prefect_ray.context import RemoteOptionsContext

        opts = RemoteOptionsContext.get().current_remote_options
        self.log.append((self.name, opts.get("memory")))
        # as Prefect does, futures among the arguments are passed as their results
        args = [[x.result() if isinstance(x, _Done) else x for x in a] if isinstance(a, list) else a for a in args]
        return _Done(self.run(*args, **kwargs))


@contextlib.contextmanager
def recording(detect=None, min_task_memory: int | None = None):
    """Patch the tasks the stage flows submit; yields the list of ``(task, memory hint)`` submitted.

    ``detect(xml, sha, view, chunk, params)``: what a detection chunk returns (default: the real
    DoG). Matching returns one ``ok`` record per pair, fusion and downsampling nothing, the solve
    (called in the flow's process, not submitted) is logged as ``("solve", None)``.
    ``min_task_memory``: replaces Ray's reservation floor (0 compares the formulas on tiny data).
    """
    import flows.alignment
    import flows.artifacts
    import rhapso_core.cost
    import tasks.detection
    import tasks.fusion
    import tasks.matching
    import tasks.solving
    from rhapso_core.pipeline.match import PairRecord

    log: list = []

    def solve_round(*args, **kwargs):
        log.append(("solve", None))
        return SimpleNamespace(to_dict=dict, verify=None, final_error=0.0, transform_name="stub")

    def match(xml, store, batch, label, *args):
        return [PairRecord(a, b, label, 1, 1, 1, 1, 0.0, "ok", "", None) for a, b in batch]

    patches = [
        (flows.artifacts, "wait_with_progress", lambda futures, what: [f.result() for f in futures]),
        *((flows.artifacts, n, lambda *a, **k: None) for n in ("points_table", "pairs_table", "solver_table")),
        (flows.alignment, "get_run_logger", lambda: logging.getLogger("planner-vs-flows")),
        (tasks.detection, "run_chunk", _Recorder(log, "detect", detect or tasks.detection.run_chunk.fn)),
        (tasks.detection, "store_points", _Recorder(log, "store", tasks.detection.store_points.fn)),
        (tasks.detection, "plan_views", tasks.detection.plan_views.fn),
        (tasks.fusion, "fuse_unit", _Recorder(log, "fuse", lambda *a: 0)),
        (tasks.fusion, "downsample", _Recorder(log, "downsample", lambda *a: 0)),
        *((tasks.fusion, n, getattr(tasks.fusion, n).fn)
          for n in ("plan_fusion", "plan_pyramid", "finish_pyramid", "fused_xml")),
        (tasks.matching, "match_pairs", _Recorder(log, "match", match)),
        (tasks.matching, "plan_pairs", tasks.matching.plan_pairs.fn),
        (tasks.solving, "solve_round", solve_round),
    ]
    if min_task_memory is not None:
        patches.append((rhapso_core.cost, "MIN_TASK_MEMORY", min_task_memory))
    with contextlib.ExitStack() as stack:
        for target, name, value in patches:
            stack.enter_context(mock.patch.object(target, name, value))
        yield log


def fixed_points(n: int):
    """A detection chunk stand-in: ``n`` points spread along the chunk's core-box diagonal (full-resolution
    x y z), far enough apart that the view's merge keeps them all."""
    import numpy as np

    from rhapso_core.detection import InterestPoints

    def run(xml, sha, view, chunk, params):
        (z0, z1), (y0, y1), (x0, x1) = chunk.core_box
        f = np.asarray(params.factors_zyx()[::-1], float)
        t = (np.arange(n)[:, None] + 0.5) / n
        loc = (np.array([x0, y0, z0]) + t * np.array([x1 - x0, y1 - y0, z1 - z0])) * f
        return InterestPoints(np.arange(n), loc, np.full(n, 100.0, np.float32), np.full(n, 1.0, np.float32))

    return run


def submitted(log: list, name: str) -> tuple[int, int | None]:
    """Tasks ``name`` submitted and the largest memory hint among them."""
    hints = [m for n, m in log if n == name]
    return len(hints), max((h for h in hints if h is not None), default=None)


@dataclass(frozen=True)
class StageCheck:
    dataset: str
    stage: str
    planned_tasks: int
    tasks: int
    planned_memory: float  # bytes per task, worker process included
    memory: float | None  # the flows' largest hint plus the same worker process; None: not submitted
    estimate: float | None = None  # matching, planned before detection

    @property
    def agrees(self) -> bool:
        return self.planned_tasks == self.tasks and (self.memory is None or self.planned_memory == self.memory)


def compare(name: str, xml: str, work: Path, params=None, cores: int = CORES, detect=None,
            min_task_memory: int | None = None) -> list[StageCheck]:
    """Plan ``xml`` with ``params`` (default ``PipelineParams()``), run the stages, compare per stage."""
    from flows.alignment import detection_stage, match_and_solve_stage
    from flows.fusion import fusion_stage
    from rhapso_core import autoparams
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline.prealign import alignment_rounds
    from rhapso_core.pipeline.retry import RetryParams
    from rhapso_core.planner import plan

    p = params if params is not None else PipelineParams()
    store = str(work / "interestpoints.zarr")
    with recording(detect, min_task_memory) as log:
        before = plan(xml, cores=cores, memory_per_core_gb=MEMORY_PER_CORE_GB, params=p, points_store=store,
                      read_pixels=True)
        base = before.throughputs["process_baseline_mb"] * 1e6
        # As run_alignment: every `auto` value resolved from the dataset, then the stages.
        resolution = autoparams.resolve_parameters(xml, p)
        rp = resolution.params
        detection_stage.fn(xml, store, rp.detection, rp.views)
        no_retry = RetryParams(enabled=False, phase_link=False, image_check=False)
        for kind in alignment_rounds(rp, resolution.prealignment):
            if kind == "phase":  # not costed by the planner; its solve is counted
                log.append(("solve", None))
                continue
            m, s = rp.round_params(kind)
            match_and_solve_stage.fn(xml, store, rp.detection.label, m, s, str(work / f"{kind}.xml"), kind,
                                     rp.alignment.pair_mode, list(rp.alignment.group_by), cores,
                                     pair_retry=no_retry, alignment=rp.alignment, selection=rp.views,
                                     channels=rp.detection.channels)
        after = plan(xml, cores=cores, memory_per_core_gb=MEMORY_PER_CORE_GB, params=p, points_store=store,
                     read_pixels=True)
        fusion_stage.fn(xml, str(work / "fused.ome.zarr"), rp.fusion)

    rows = []
    for stage, task in (("detection", "detect"), ("matching", "match"), ("solve", "solve"),
                        ("fusion", "fuse"), ("multiscale", "downsample")):
        n, hint = submitted(log, task)
        planned = after.stage(stage)
        rows.append(StageCheck(name, stage, planned.tasks, n, planned.memory_per_task_bytes,
                               None if hint is None else base + hint,
                               before.stage(stage).memory_per_task_bytes if stage == "matching" else None))
    return rows


# --------------------------------------------------------------------------- datasets
def accuracy_datasets(names: list[str]):
    """(name, xml) of bench_accuracy cells, generated as that benchmark generates them."""
    import bench_accuracy as ba

    for cell in ba.CELLS:
        if cell.name not in names:
            continue
        if cell.volume and not (ba.REAL / cell.volume).is_dir():
            print(f"[{cell.name}] skipped: {ba.REAL / cell.volume} is absent", file=sys.stderr)
            continue
        yield f"accuracy/{cell.name}", lambda folder, c=cell: str(ba.make_dataset(c, folder).xml)


def end_to_end_datasets(sizes: list[str]):
    import run_benchmarks as rb

    for size in sizes:
        yield f"end-to-end/{size}", lambda folder, s=size: rb.ensure_dataset(folder, s)["xml"]


def overhead_dataset():
    def make(folder):
        from rhapso_core.synthetic.params import SyntheticParams
        from rhapso_core.synthetic.write import write_dataset

        return str(write_dataset(folder / "data", SyntheticParams(grid=(3, 2, 1))).xml)

    yield "fusion-overhead", make


def _mb(b):
    return "-" if b is None else f"{b / 1e6:,.1f}"


def table(rows: list[StageCheck]) -> str:
    lines = ["| dataset | stage | tasks planned / submitted | MB per task planned / reserved | agree |",
             "|---|---|---|---|---|"]
    for r in rows:
        mem = f"{_mb(r.planned_memory)} / {_mb(r.memory)}"
        if r.memory is None:
            mem = f"{_mb(r.planned_memory)} / (in the flow's process)"
        if r.estimate is not None and r.estimate != r.planned_memory:
            mem += f" (before detection: {_mb(r.estimate)}, estimated)"
        lines.append(f"| {r.dataset} | {r.stage} | {r.planned_tasks} / {r.tasks} | {mem} | "
                     f"{'yes' if r.agrees else '**no**'} |")
    return "\n".join(lines)


def summary(rows: list[StageCheck]) -> str:
    """One line per dataset: each stage's tasks and MB per task, planned = submitted, or both where they differ."""
    stages = ("detection", "matching", "solve", "fusion", "multiscale")
    lines = ["| dataset | " + " | ".join(f"{s} tasks, MB" for s in stages) + " |", "|---" * (len(stages) + 1) + "|"]
    for name in dict.fromkeys(r.dataset for r in rows):
        cells = []
        for st in stages:
            r = next(x for x in rows if x.dataset == name and x.stage == st)
            tasks = str(r.tasks) if r.planned_tasks == r.tasks else f"**{r.planned_tasks} / {r.tasks}**"
            mem = _mb(r.planned_memory)
            if r.memory is not None and r.memory != r.planned_memory:
                mem = f"**{mem} / {_mb(r.memory)}**"
            cells.append(f"{tasks}, {mem}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import bench_accuracy as ba

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default=",".join(c.name for c in ba.CELLS), help="bench_accuracy cells (comma-separated)")
    ap.add_argument("--sizes", default="small", help="run_benchmarks sizes (comma-separated; '' for none)")
    ap.add_argument("--no-overhead", action="store_true", help="leave out the fusion-overhead dataset")
    ap.add_argument("--cores", type=int, default=CORES, help="cluster cores (matching's batches follow them)")
    ap.add_argument("--stub-detection", action="store_true", help="detection chunks return 7 fixed points")
    ap.add_argument("--work", help="work folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="planner-vs-flows-"))
    detect = fixed_points(7) if args.stub_detection else None
    sources = [*accuracy_datasets([c for c in args.cells.split(",") if c]),
               *end_to_end_datasets([s for s in args.sizes.split(",") if s]),
               *([] if args.no_overhead else overhead_dataset())]
    rows: list[StageCheck] = []
    try:
        for name, make in sources:
            t = time.perf_counter()
            folder = work / name.replace("/", "_")
            xml = make(folder)
            rows += compare(name, xml, folder / "run", cores=args.cores, detect=detect)
            print(f"[{name}] {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            if not args.work:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print()
    print(summary(rows))
    bad = [r for r in rows if not r.agrees]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} stage rows agree ({args.cores} cores, "
          f"{MEMORY_PER_CORE_GB:g} GB per core)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
