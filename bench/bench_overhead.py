"""What a flow run costs beyond its work: ``rhapso fuse``'s wall time minus the stage work (issue 21, item 2).

One run, on one small generated dataset (``rhapso synth --grid 3x2x1``: 6 uint16 tiles,
fused into 64 x 481 x 706 = 21.7 Mvox), prints:

1. **in-process stage work**: the fusion stage's functions called directly in one fresh
   process (``plan_fusion``, ``fuse_unit`` per work unit, the pyramid's ``plan_pyramid`` /
   ``downsample_unit`` / ``finish_pyramid``, ``write_fused_xml``), after their imports
   (shown apart), kernels loaded from numba's cache as in a command; for each checkout (its
   own stage code), once before the commands and once in each round among them, best of all;
2. **the command**, ``rhapso fuse XML --out OUT`` (``rhapso_cli.main.cli``) in a fresh process per
   configuration, run through a probe that times, without changing them, the steps between
   the process start and its exit: interpreter start and imports until the command enters
   its Prefect API, waiting for the API (its start-up, less what overlapped the command's own
   imports), Ray start and stop, the stages as the flow times them (its progress events),
   task submission (``Task.submit`` in the driver), the API calls the driver makes (flow and
   task-run state writes over HTTP; summed over threads, so they overlap the rest), the API's
   stop and the process exit. **overhead** = wall - in-process stage work (of the same checkout).
   The load average at the start and the end is printed with the figures.

Configurations (``--configs``, comma-separated):

* ``threads``: ``--no-ray`` (tasks in threads of the command);
* ``auto``: the default, which picks threads or a local Ray by the planner's rule
  (``runtime.local_threads_max_cpu_s``);
* ``ray``: ``--ray`` (a local Ray whatever the job's size);
* ``...+server``: the same with ``PREFECT_API_URL`` set to a Prefect server already
  running (started by this benchmark before the runs), as when one is configured;
* ``...+temporary``: the same with ``RHAPSO_LOCAL_API_IDLE_S=0`` (a temporary local API per
  command, stopped with it) where the plain configuration uses the local API kept between
  commands (``flows/kept_api.py``; the checkout's default when it has that module).

The kept local API lives in a state folder of this benchmark's own (``RHAPSO_LOCAL_API_DIR``),
none at the start: the first command of each checkout that has one starts it (the "first run"
line), the later ones reuse it; it is stopped at the end.

``--before DIR`` times another checkout (e.g. the main branch before this change) too, each of
its runs right after the same configuration's run of this one, so that both see the same
load (``ray`` there is its default, which always started a local Ray). Every figure is the
best of ``--repeat`` runs (by wall time; the machine this ran on is shared, see
docs/benchmarks.md).

Usage::

    python bench/bench_overhead.py                         # threads,auto,ray,auto+server; ~5 min on 2 cores
    python bench/bench_overhead.py --before ../main --configs threads,auto,ray
    python bench/bench_overhead.py --configs threads --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Prefect's own temporary server (the code before this change) gives up after 20 s, which a
# loaded 2-core machine exceeds (seen here); flows.local_api waits 90 s.
BASE_ENV = {"RAY_AUTH_MODE": "disabled", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}

# --- the probe: runs inside the command's process ----------------------------------------

PROBE = r'''
import json, os, sys, threading, time
T0 = float(os.environ["BENCH_T0"])
t_start = time.time()
sys.path.insert(0, os.environ["BENCH_ROOT"])
ev = {"interpreter_s": t_start - T0}
spans = {}
lock = threading.Lock()

def add(name, dt, n=1):
    with lock:
        s = spans.setdefault(name, [0.0, 0])
        s[0] += dt
        s[1] += n

def mark(name):
    ev.setdefault(name, time.time() - T0)

def timed(owner, attr, name, first=None):
    fn = getattr(owner, attr)
    def wrapper(*a, **k):
        t = time.time()
        if first:
            mark(first)
        try:
            return fn(*a, **k)
        finally:
            add(name, time.time() - t)
    setattr(owner, attr, wrapper)

import contextlib
import flows.runtime as runtime
orig_api = runtime.prefect_api
@contextlib.contextmanager
def prefect_api():
    mark("api_enter")
    with orig_api() as url:
        mark("api_ready")
        try:
            yield url
        finally:
            mark("api_exit")
    mark("api_stopped")
runtime.prefect_api = prefect_api
try:
    import flows.local_api as la
    orig_init = la.LocalAPIServer.__init__
    def init(self, *a, **k):
        mark("api_launch")
        orig_init(self, *a, **k)
    la.LocalAPIServer.__init__ = init
    orig_wait = la.LocalAPIServer.wait_ready
    def wait_ready(self, *a, **k):
        url = orig_wait(self, *a, **k)
        if self.ready_at is not None:
            ev["api_server_up"] = self.ready_at - time.monotonic() + time.time() - T0
        return url
    la.LocalAPIServer.wait_ready = wait_ready
except ImportError:
    pass

_hooked = False
def hook_heavy():
    # Prefect and Ray are imported by the command itself; hook them once they are there.
    global _hooked
    if _hooked:
        return
    _hooked = True
    import prefect.tasks, prefect.client.base as cb
    timed(prefect.tasks.Task, "submit", "task_submit", first="first_submit")
    trace = []
    ev["api_trace"] = trace
    orig_sync = cb.PrefectHttpxSyncClient.send
    def sync_send(self, request, *a, **k):
        t = time.time()
        try:
            return orig_sync(self, request, *a, **k)
        finally:
            add("api_calls_sync", time.time() - t)
            trace.append([round(t - T0, 3), round(time.time() - t, 3), request.method, request.url.path])
    cb.PrefectHttpxSyncClient.send = sync_send
    orig_send = cb.PrefectHttpxAsyncClient.send
    async def send(self, request, *a, **k):
        t = time.time()
        try:
            return await orig_send(self, request, *a, **k)
        finally:
            add("api_calls_async", time.time() - t)
            trace.append([round(t - T0, 3), round(time.time() - t, 3), request.method, request.url.path])
    cb.PrefectHttpxAsyncClient.send = send

orig_api2 = runtime.prefect_api
@contextlib.contextmanager
def prefect_api_hooked():
    hook_heavy()
    with orig_api2() as url:
        yield url
runtime.prefect_api = prefect_api_hooked

# Ray's start and stop, hooked when a run starts Ray: "ray" in sys.modules may be a lazy module
# (prefect_ray's) whose first attribute read imports Ray, which a run in threads never does.
_ray_hooked = False
orig_ray_session = runtime.ray_session
@contextlib.contextmanager
def ray_session(rt):
    global _ray_hooked
    if rt.use_ray and not _ray_hooked:
        _ray_hooked = True
        import ray
        timed(ray, "init", "ray_init")
        timed(ray, "shutdown", "ray_shutdown")
    with orig_ray_session(rt):
        yield
runtime.ray_session = ray_session

import flows.progress as progress
stages = {}
def listen(e):
    with lock:
        s = stages.setdefault(e.what, {"first": time.time() - T0, "seconds": 0.0, "done": 0, "total": e.total})
        s["seconds"], s["done"] = e.elapsed_s, e.done
        s["last"] = time.time() - T0
progress._listeners.append(listen)

import rhapso_cli.main as m
mark("main")
rc = m.cli(sys.argv[1:])  # what the console script runs (its exit-time steps included)
mark("command_done")
out = {"rc": rc, "events": ev, "spans": spans, "stages": stages}
with open(os.environ["BENCH_PROBE_OUT"], "w") as f:
    json.dump(out, f)
sys.stdout.flush()
'''

IN_PROCESS = r'''
import json, os, sys, time
sys.path.insert(0, os.environ["BENCH_ROOT"])
t0 = time.perf_counter()
from rhapso_core.config import PipelineParams
from rhapso_core.pipeline import fuse
from rhapso_core.pipeline.fused_xml import write_fused_xml
t1 = time.perf_counter()
xml, out = sys.argv[1], sys.argv[2]
p = PipelineParams().fusion
r = {"imports_s": t1 - t0}
t = time.perf_counter()
plan = fuse.plan_fusion(xml, out, p)
r["plan_s"] = time.perf_counter() - t
t = time.perf_counter()
for k in range(len(plan.slots)):
    for i in range(len(plan.units)):
        fuse.fuse_unit(xml, plan, i, p, slot_index=k)
r["fuse_s"] = time.perf_counter() - t
t = time.perf_counter()
base, work = fuse.plan_pyramid(out, p)
for level in work:
    for b in level.blocks:
        fuse.downsample_unit(out, level, [b])
fuse.finish_pyramid(out, base, work)
r["pyramid_s"] = time.perf_counter() - t
t = time.perf_counter()
write_fused_xml(out, out[:-len(".ome.zarr")] + ".xml")
r["xml_s"] = time.perf_counter() - t
r["voxels"] = int(__import__("numpy").prod(plan.shape_zyx))
print(json.dumps(r))
'''

CONFIG_FLAGS = {"threads": ["--no-ray"], "auto": [], "ray": ["--ray"]}


def _env(root: Path, extra: dict | None = None) -> dict:
    env = {**os.environ, **BASE_ENV, "PYTHONPATH": str(root), "BENCH_ROOT": str(root), **(extra or {})}
    env.pop("PREFECT_API_URL", None)
    return env | (extra or {})


def in_process(root: Path, xml: str, work: Path, repeat: int) -> dict:
    best = None
    for i in range(repeat):
        out = work / f"inproc{i}.ome.zarr"
        res = subprocess.run([sys.executable, "-c", IN_PROCESS, xml, str(out)], env=_env(root),
                             capture_output=True, text=True, check=True, cwd=root)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["work_s"] = r["plan_s"] + r["fuse_s"] + r["pyramid_s"] + r["xml_s"]
        if best is None or r["work_s"] < best["work_s"]:
            best = r
        shutil.rmtree(out, ignore_errors=True)
    return best


def command(root: Path, xml: str, work: Path, flags: list[str], api_url: str | None, i: int,
            temporary: bool = False) -> dict:
    out = work / f"cli{i}.ome.zarr"
    probe_out = work / f"probe{i}.json"
    extra = {"BENCH_PROBE_OUT": str(probe_out), "RHAPSO_LOCAL_API_DIR": str(work / "kept-api" / root.name)}
    if temporary:
        extra["RHAPSO_LOCAL_API_IDLE_S"] = "0"
    env = _env(root, extra)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env["BENCH_T0"] = repr(time.time())
    t0 = time.perf_counter()
    # cwd: Ray puts the driver's working directory first on its workers' path.
    res = subprocess.run([sys.executable, "-c", PROBE, "fuse", xml, "--out", str(out), *flags],
                         env=env, capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - t0
    p = json.loads(probe_out.read_text()) if probe_out.exists() else {"rc": None}
    if res.returncode != 0 or p["rc"] != 0:
        raise RuntimeError(f"{root}: rhapso fuse {' '.join(flags)} failed ({res.returncode}, {p['rc']}):\n"
                           f"{res.stderr[-3000:]}")
    p["wall_s"] = wall
    p["api_line"] = next((ln.strip() for ln in res.stderr.splitlines() if "Prefect API:" in ln), "")
    p["stderr"] = res.stderr
    p["stdout"] = res.stdout
    shutil.rmtree(out, ignore_errors=True)
    for suffix in (".summary.json",):
        Path(str(out) + suffix).unlink(missing_ok=True)
    Path(str(out)[:-len(".ome.zarr")] + ".xml").unlink(missing_ok=True)
    return p


def breakdown(p: dict, work_s: float) -> list[tuple[str, float | str]]:
    ev, sp, st = p["events"], p["spans"], p["stages"]
    wall = p["wall_s"]
    span = lambda k: sp.get(k, [0.0, 0])[0]  # noqa: E731
    count = lambda k: sp.get(k, [0.0, 0])[1]  # noqa: E731
    api_wait = ev.get("api_ready", 0) - ev.get("api_enter", 0)
    stage_s = sum(s["seconds"] for s in st.values())
    stage_first = min((s["first"] for s in st.values()), default=ev.get("api_ready", 0))
    stage_last = max((s.get("last", s["first"]) for s in st.values()), default=stage_first)
    ray_init, ray_stop = span("ray_init"), span("ray_shutdown")
    flow_before = stage_first - ev.get("api_ready", 0) - ray_init
    rows = [
        ("wall", wall),
        ("  interpreter start", ev["interpreter_s"]),
        ("  imports and checks until the Prefect API is needed", ev.get("api_enter", 0) - ev["interpreter_s"]),
        ("  waiting for the Prefect API", api_wait),
    ]
    if "api_launch" in ev and "api_server_up" in ev:
        rows.append(("    (its start-up, launched at process start + %.1f s)" % ev["api_launch"],
                     ev["api_server_up"] - ev["api_launch"]))
    rows += [
        ("  Ray start (ray.init)", ray_init),
        ("  flow runs until the first stage's work", flow_before),
        ("  stages, as the flow times them", stage_s),
        ("  between and after the stages (flow runs ending, pyramid planning, fused XML)",
         ev.get("api_exit", stage_last) - stage_last - ray_stop + (stage_last - stage_first - stage_s)),
        ("  Ray stop (ray.shutdown)", ray_stop),
        ("  Prefect API stop (log drain, server stop)", ev.get("api_stopped", 0) - ev.get("api_exit", 0)),
        ("  after the command (summary, process exit)", wall - ev.get("api_stopped", ev.get("command_done", wall))),
        ("in-process stage work", work_s),
        ("OVERHEAD (wall - in-process stage work)", wall - work_s),
        ("task submissions (driver, inside the above)",
         f"{count('task_submit')} in {span('task_submit'):.2f} s"),
        ("API calls over HTTP (driver; summed over threads)",
         f"{count('api_calls_sync') + count('api_calls_async')} in "
         f"{span('api_calls_sync') + span('api_calls_async'):.2f} s"),
    ]
    return rows


def executor_line(p: dict) -> str:
    for line in (p.get("stdout", "") + p.get("stderr", "")).splitlines():
        if "tasks run in" in line or "tasks ran in" in line:
            return line.strip()
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xml", help="dataset XML (default: a generated 3x2x1 grid)")
    ap.add_argument("--configs", default="threads,auto,ray,auto+server")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--root", default=str(ROOT), help="checkout whose command is timed (default: this one)")
    ap.add_argument("--before", help="another checkout (e.g. the main branch) timed the same way, each of its "
                                     "runs right after the same run of --root, so both see the same load")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    roots = [Path(args.root).resolve()] + ([Path(args.before).resolve()] if args.before else [])
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    server = None
    try:
        xml = args.xml
        if not xml:
            sys.path.insert(0, str(ROOT))
            from rhapso_core.synthetic.params import SyntheticParams
            from rhapso_core.synthetic.write import write_dataset

            xml = str(write_dataset(work / "data", SyntheticParams(grid=(3, 2, 1))).xml)
        load0 = os.getloadavg()
        # The reference work is measured once before the commands and once in each round among
        # them (best of all): on a shared machine, the load when it ran moves the overhead.
        # Each checkout's own work (its stage code), measured alternately like its commands.
        refs: dict[int, list[dict]] = {r: [in_process(root, xml, work, 1)] for r, root in enumerate(roots)}
        runs: dict[tuple[int, str], list[dict]] = {}
        n = 0
        for i in range(args.repeat):
            for r, root in enumerate(roots):
                refs[r].append(in_process(root, xml, work, 1))
            for cfg in configs:
                base, _, srv = cfg.partition("+")
                api_url = None
                if srv == "server":
                    if server is None:
                        sys.path.insert(0, str(ROOT))
                        from flows.local_api import LocalAPIServer

                        os.environ.update(BASE_ENV)
                        server = LocalAPIServer()
                        server.wait_ready()
                        # A running server has answered requests before: its first one builds
                        # FastAPI's routes (0.4-0.7 s here), which no command should be charged.
                        import urllib.request

                        urllib.request.urlopen(server.api_url + "/admin/version", timeout=30).read()
                    api_url = server.api_url
                for r, root in enumerate(roots):
                    flags = CONFIG_FLAGS[base]
                    if r > 0 and base == "ray":
                        flags = []  # before this change, the default was always a local Ray
                    n += 1
                    runs.setdefault((r, cfg), []).append(command(root, xml, work, flags, api_url, n,
                                                                 temporary=srv == "temporary"))
        best_ref = {r: min(rs, key=lambda x: x["work_s"]) for r, rs in refs.items()}
        print(f"dataset: {xml}; fused {best_ref[0]['voxels'] / 1e6:.1f} Mvox")
        for r, ref in best_ref.items():
            print(f"in-process stage work of {roots[r]} (best of {len(refs[r])}, spread "
                  f"{min(x['work_s'] for x in refs[r]):.2f}-{max(x['work_s'] for x in refs[r]):.2f} s): "
                  f"{ref['work_s']:.2f} s = plan {ref['plan_s']:.2f} + fuse {ref['fuse_s']:.2f} + pyramid "
                  f"{ref['pyramid_s']:.2f} + fused XML {ref['xml_s']:.2f} (imports before it: {ref['imports_s']:.2f} s)")
        print("load average (1, 5, 15 min) at the start: %.1f %.1f %.1f; at the end: %.1f %.1f %.1f"
              % (*load0, *os.getloadavg()))
        results = {"in_process": {str(roots[r]): rs for r, rs in refs.items()}, "load_start": load0,
                   "load_end": os.getloadavg(), "runs": {}}
        for (r, cfg), rs in runs.items():
            base, _, srv = cfg.partition("+")
            best = min(rs, key=lambda x: x["wall_s"])
            walls = ", ".join(f"{x['wall_s']:.1f}" for x in rs)
            flags = CONFIG_FLAGS[base] if not (r > 0 and base == "ray") else []
            label = {"server": " (PREFECT_API_URL: a running server)",
                     "temporary": " (RHAPSO_LOCAL_API_IDLE_S=0)"}.get(srv, "")
            print(f"\n== {roots[r]}: rhapso fuse {' '.join(flags)}{label}  [walls {walls} s; best shown; "
                  f"overhead best / median / worst {best['wall_s'] - best_ref[r]['work_s']:.1f} / "
                  f"{sorted(x['wall_s'] for x in rs)[len(rs) // 2] - best_ref[r]['work_s']:.1f} / "
                  f"{max(x['wall_s'] for x in rs) - best_ref[r]['work_s']:.1f} s]")
            for line in (best.get("api_line"), executor_line(best)):
                if line:
                    print(f"  the command said: {line}")
            if "kept between commands" in rs[0].get("api_line", "") and "started by this command" in rs[0]["api_line"]:
                print(f"  first run (it started the kept local API): wall {rs[0]['wall_s']:.1f} s, overhead "
                      f"{rs[0]['wall_s'] - best_ref[r]['work_s']:.1f} s; the later runs reused it")
            for name, v in breakdown(best, best_ref[r]["work_s"]):
                print(f"{name:<82}{v:>8.1f} s" if isinstance(v, float) else f"{name:<82}{v:>10}")
            results["runs"][f"{roots[r]}:{cfg}"] = [{k: v for k, v in x.items() if k not in ("stderr", "stdout")}
                                                    for x in rs]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        if server is not None:
            server.stop()
        for state in (work / "kept-api").glob("*"):  # the kept local APIs the commands started
            try:
                sys.path.insert(0, str(ROOT))
                from flows.kept_api import stop_server

                stop_server(state)
            except ImportError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
