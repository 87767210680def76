"""The cyclic collector is paused while a flow command imports what it runs, and back (with the
start's objects frozen) before its first flow run; every other command runs with it as before."""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from rhapso_cli import startup_gc

ROOT = Path(__file__).resolve().parents[2]

PROBE = r'''
import contextlib, gc, json, sys
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(info["generation"]))
import flows.runtime
seen = {}

@contextlib.contextmanager
def probe_api():
    seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count(), collections=len(collections),
                prefect="prefect" in sys.modules, stitch="flows.stitch" in sys.modules)
    raise RuntimeError("stop before the flow run")
    yield

flows.runtime.prefect_api = probe_api
from rhapso_cli.main import cli
collections.clear()  # the probe's own imports above
rc = cli(sys.argv[1:])
print(json.dumps({"rc": rc, "enabled_after": gc.isenabled(), **seen}))
'''


def _cli(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), RHAPSO_LOCAL_API_IDLE_S="0")
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=300)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_pause_and_resume():
    was = gc.isenabled()
    try:
        startup_gc.resume()  # not paused: nothing happens
        assert gc.isenabled() == was
        startup_gc.pause()
        assert not gc.isenabled()
        before = gc.get_freeze_count()
        startup_gc.resume()
        assert gc.isenabled() and gc.get_freeze_count() >= before
        gc.disable()
        startup_gc.pause()
        startup_gc.resume()
        assert not gc.isenabled()  # the state it was paused from
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()


def test_a_flow_command_imports_without_the_collector_and_runs_with_it(tmp_path):
    from rhapso_core.synthetic.params import SyntheticParams
    from rhapso_core.synthetic.write import write_dataset

    paths = write_dataset(tmp_path / "data", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), n_levels=1))
    seen, err = _cli(["stitch", str(paths.xml), "--out", str(tmp_path / "out")], tmp_path)
    assert seen["prefect"] and seen["stitch"], err  # the command's imports were done by then
    assert seen["collections"] == 0, err  # none while they ran (~525 otherwise)
    assert seen["enabled"] and seen["frozen"] > 50_000, err  # back, the start's objects frozen
    assert seen["rc"] != 0 and seen["enabled_after"]


def test_other_commands_keep_the_collector(tmp_path):
    seen, err = _cli(["xml", str(tmp_path / "missing.xml"), "--out", str(tmp_path / "o.xml")], tmp_path)
    assert seen["rc"] == 2 and seen["enabled_after"], err
    assert "enabled" not in seen  # no flow, no API
