"""--ray / --no-ray, and where the tasks ran, in a command's output."""

from __future__ import annotations

import io

import pytest

from rhapso_cli.main import _params, build_parser
from rhapso_cli.progress import ProgressDisplay
from rhapso_cli.summary import summary_lines


def _parsed(*argv):
    return build_parser().parse_args(["fuse", "in.xml", "--out", "out.ome.zarr", *argv])


def test_ray_flags_set_the_runtime_and_exclude_each_other(capsys):
    default = _params(_parsed()).runtime
    assert default.use_ray and default.local_threads_max_cpu_s == 30.0  # the planner's rule decides
    assert _params(_parsed("--ray")).runtime.local_threads_max_cpu_s == 0  # always a local Ray
    assert _params(_parsed("--no-ray")).runtime.use_ray is False  # always threads
    with pytest.raises(SystemExit):
        _parsed("--ray", "--no-ray")
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_choice_is_shown_when_made_and_in_the_summary():
    stream = io.StringIO()
    display = ProgressDisplay(stream=stream, tty=False)
    display.note("tasks run in threads of this process: planned work 1.2 core-s <= 30")
    assert stream.getvalue() == "  tasks run in threads of this process: planned work 1.2 core-s <= 30\n"
    fuse = {"output": "f.ome.zarr", "xml": "f.xml", "shape_zyx": [10, 20, 30], "blocks_written": 3, "units": 1,
            "executor": {"use_ray": False, "where": "threads of this process", "reason": "planned work 1.2 core-s"}}
    text = "\n".join(summary_lines("fuse", fuse, None, 5.0, "f.ome.zarr.summary.json"))
    assert "  tasks ran in threads of this process (planned work 1.2 core-s)" in text
