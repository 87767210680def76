"""User errors answered in one line, exit 2, before the heavy imports (issue 22 item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rhapso_core import param_files
from rhapso_core.config import PipelineParams

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_XML = ROOT / "tests" / "fixtures" / "xml"  # in the repository (its SOURCES.txt)
XML = FIXTURE_XML / "pydantic-bigstitcher" / "bigstitcher_3.xml"
HEAVY = ("prefect", "ray", "zarr", "numba", "scipy")

# Runs the command in a fresh interpreter and reports, as JSON on the last line, its exit status,
# the heavy modules it imported and its own CPU time (wall time on a shared machine is noise).
_PROBE = """
import json, resource, sys
from rhapso_cli.main import main
rc = main(sys.argv[1:])
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rc": rc, "heavy": [m for m in %r if m in sys.modules], "cpu_s": ru.ru_utime + ru.ru_stime}))
""" % (HEAVY,)


def probe(*args: str) -> tuple[dict, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


@pytest.mark.parametrize("override, expect", [
    ("detection.sigmaa=1", "unknown parameter 'detection.sigmaa' (did you mean 'sigma'?)"),
    ("detectoin.sigma=1", "unknown parameter 'detectoin' (did you mean 'detection'?)"),
    ("runtime.num_cpu=2", "unknown parameter 'runtime.num_cpu' (did you mean 'num_cpus'?)"),
])
def test_unknown_set_key_is_one_line_with_a_suggestion(override, expect, tmp_path):
    out, err = probe("align", str(XML), "--out", str(tmp_path / "solved.xml"), "--set", override)
    assert out["rc"] == 2
    assert err.strip().splitlines() == [f"rhapso align: error: --set: {expect}"]
    assert "Extra inputs" not in err
    assert out["heavy"] == [], "the parameter check must come before the heavy imports"
    assert out["cpu_s"] < 3.0, out  # loose: measured ~0.6 s CPU; the heavy imports alone cost ~4 s
    assert not (tmp_path / "solved.xml").exists()


def test_unknown_key_in_a_parameter_file_names_the_file_and_suggests(tmp_path):
    nested = tmp_path / "nested.yml"
    nested.write_text("fusion:\n  blok_size: [64, 64, 64]\n")
    with pytest.raises(param_files.ParameterError, match=r"nested.yml: unknown parameter 'fusion.blok_size' "
                                                        r"\(did you mean 'block_size'\?\)"):
        param_files.load(PipelineParams, nested)
    flat = tmp_path / "flat.yml"
    flat.write_text("sigmaa: 1.8\n")
    with pytest.raises(param_files.ParameterError, match=r"flat.yml: unknown parameter 'sigmaa' \(did you mean 'sigma'\?\)"):
        param_files.load(PipelineParams, flat)


def test_nothing_close_gets_no_suggestion():
    with pytest.raises(param_files.ParameterError) as e:
        param_files.load(PipelineParams, None, ["detection.zzzzzz=1"])
    assert str(e.value) == "--set: unknown parameter 'detection.zzzzzz'"


@pytest.mark.parametrize("command", [["stitch", "{d}", "--out", "{o}"], ["plan", "{d}", "--cores", "2",
                                     "--memory-per-core", "2"], ["align", "{d}", "--out", "{o}/s.xml"],
                                     ["qc", "{d}", "--input", "{d}"]])
def test_a_folder_for_an_xml_is_one_line_naming_the_xml_inside(command, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "dataset.xml").write_text("<SpimData/>")
    argv = [a.format(d=folder, o=tmp_path / "out") for a in command]
    out, err = probe(*argv)
    assert out["rc"] == 2
    assert err.strip().splitlines() == [
        f"rhapso {command[0]}: error: {folder}: is a folder; "
        f"{'the solved XML' if command[0] == 'qc' else 'the dataset XML'} must be a BigStitcher XML file "
        f"(did you mean {folder / 'dataset.xml'}?)"]
    assert out["heavy"] == []
    assert not (tmp_path / "out").exists()


def test_help_imports_nothing_heavy():
    r = subprocess.run([sys.executable, "-c", "import sys\nfrom rhapso_cli.main import build_parser\n"
                        "build_parser().format_help()\nprint([m for m in %r if m in sys.modules])" % (HEAVY,)],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.stdout.strip() == "[]", r.stderr


def test_lazy_package_exports_match_eager_semantics():
    import rhapso_core.solver as solver
    from rhapso_core.matching import ransac
    from rhapso_core.solver import solve

    import rhapso_core.solver.solve  # noqa: F401  (binding the submodule must not shadow the function)
    assert callable(solve) and not isinstance(solver.solve, type(sys)) and solver.solve is solve
    assert callable(ransac)
    for pkg in ("detection", "fusion", "matching", "qc", "solver", "split", "synthetic", "multiscale"):
        mod = __import__(f"rhapso_core.{pkg}", fromlist=["__all__"])
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert missing == [], (pkg, missing)


def test_plan_takes_no_overwrite_and_the_nits_have_help_texts():
    from rhapso_cli.main import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["plan", "x.xml", "--cores", "2", "--memory-per-core", "2", "--overwrite"])
    assert e.value.code == 2
    sub = parser._subparsers._group_actions[0].choices
    helps = {(cmd, a.dest): a.help for cmd in ("synth", "plan") for a in sub[cmd]._actions}
    assert helps[("synth", "out_dir")] and helps[("synth", "seed")] and helps[("plan", "json")]
    for cmd in ("align", "fuse", "stitch", "demo"):
        assert any(a.dest == "json" for a in sub[cmd]._actions), cmd


def test_plan_says_what_it_leaves_out():
    from rhapso_core.planner import STARTUP_NOTE, plan

    xml = FIXTURE_XML / "brainglobe-stitch-mesospim" / "test_data_bdv.xml"
    rep = plan(str(xml), cores=4, memory_per_core_gb=4)
    assert rep.table().splitlines()[-1] == STARTUP_NOTE and "start-up" in STARTUP_NOTE
    assert rep.to_dict()["excludes"] == STARTUP_NOTE
