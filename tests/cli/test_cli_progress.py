"""Progress while a long command runs, and a summary that fits a screen (issue 22 item 1)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.progress import ProgressEvent, listening, report
from rhapso_cli.progress import ProgressDisplay
from rhapso_cli.summary import summary_lines, write_json

ROOT = Path(__file__).resolve().parents[2]


def _events(what: str, total: int, dt: float = 0.5):
    return [ProgressEvent(what, i, total, i * dt) for i in range(total + 1)]


def test_terminal_display_redraws_one_line_per_stage_with_rate_and_time_left():
    buf = io.StringIO()
    d = ProgressDisplay(stream=buf, tty=True, min_interval_s=0.0)
    for ev in _events("views detected", 4) + _events("fusion work units", 2, 2.0):
        d(ev)
    d.close()
    text = buf.getvalue()
    assert "\r\033[K  views detected: 2/4  2.00/s  ~1.0 s left" in text
    assert text.count("\n") == 2  # one finished line per stage
    assert "views detected: 4/4 in 2.0 s\n" in text and "fusion work units: 2/2 in 4.0 s\n" in text
    assert [(s.what, s.done, s.total) for s in d.stages] == [("views detected", 4, 4), ("fusion work units", 2, 2)]


def test_log_display_writes_plain_lines_at_start_quarters_and_end():
    buf = io.StringIO()
    d = ProgressDisplay(stream=buf, tty=False)
    for ev in _events("pairs matched", 100, 0.01):
        d(ev)
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and "\033" not in buf.getvalue()
    assert len(lines) == 5, lines  # 0, 25, 50, 75, 100 of 100
    assert lines[0] == "  pairs matched: 0/100" and lines[-1] == "  pairs matched: 100/100 in 1.0 s"


def test_listeners_get_events_and_a_failing_listener_is_ignored():
    got = []

    def bad(ev):
        raise RuntimeError("display broke")

    with listening(got.append), listening(bad):
        report(ProgressEvent("x", 1, 2, 0.1))
    report(ProgressEvent("x", 2, 2, 0.2))  # no longer listening
    assert got == [ProgressEvent("x", 1, 2, 0.1)]


def test_flow_progress_reaches_listeners(monkeypatch):
    from flows import artifacts

    monkeypatch.setattr(artifacts, "create_progress_artifact", lambda *a, **k: "id")
    monkeypatch.setattr(artifacts, "update_progress_artifact", lambda *a, **k: None)
    got = []
    with listening(got.append):
        p = artifacts.Progress(3, "views detected")
        for _ in range(3):
            p.advance()
    assert [(e.done, e.total) for e in got] == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_summary_of_a_big_run_still_fits_a_screen(tmp_path):
    result = {
        "alignment": {"store": "s", "detection": {f"0/{i}": 1000 + i for i in range(400)},
                      "rounds": [{"transform": t, "pairs": 1200, "pairs_matched": 1190, "final_error": 0.3}
                                 for t in ("rigid", "affine")]},
        "fusion": {"shape_zyx": [2000, 9000, 9000], "units": 800, "blocks_written": 0},
        "aligned_xml": "a.xml", "fused": "f.zarr",
        "qc": {"verdict": "warn", "report_uri": "r.html",
               "reasons": [{"level": "warn", "stage": "fusion", "message": f"reason {i}"} for i in range(50)]},
    }
    d = ProgressDisplay(stream=io.StringIO(), tty=False)
    for k in range(20):
        d(ProgressEvent(f"stage {k}", 1, 1, 1.0))
    score = {"gauge": "affine", "rms_voxels": 0.08, "max_voxels": 0.2, "rms_um": 0.04, "max_um": 0.1,
             "nominal_rms_voxels": 2.5}
    lines = summary_lines("stitch", result, d, 75.0, str(tmp_path / "summary.json"), score)
    assert len(lines) <= 25 and max(map(len, lines)) < 200
    assert "all reused from an earlier run" in " ".join(lines)
    i = next(i for i, ln in enumerate(lines) if "affine gauge" in ln)
    assert "0.08 voxels = 0.04 um" in lines[i + 1]
    path = write_json(str(tmp_path / "summary.json"), result)
    assert json.loads(Path(path).read_text()) == result
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left


def _run_in_pty(argv: list[str], timeout: float) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120", COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "rhapso_cli.main", *argv], stdin=slave, stdout=slave,
                            stderr=slave, cwd=ROOT, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    rc = proc.wait(timeout=60)
    os.close(master)
    return rc, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.heavy  # 24 s; progress and the summary are also checked without a terminal in this file
def test_demo_in_a_terminal_shows_progress_then_a_screen_sized_summary(tmp_path):
    out = tmp_path / "demo"
    # The README's demo as it is (6 tiles): smaller tiles hold too few points in their overlaps to
    # match, and a QC "fail" ends before the error against the truth is scored.
    rc, text = _run_in_pty(["demo", "--out", str(out), "--no-ray"], 900)
    assert rc == 0, text[-3000:]
    (out / "terminal.txt").write_text(text)  # what a person saw (kept for the README)
    # progress: lines redrawn in place, with done/total
    assert re.search(r"\r\x1b\[K  views detected: \d+/6", text), text[-3000:]
    assert re.search(r"fusion work units: (\d+)/\1 in ", text)
    summary = text[text.index("rhapso demo: done in"):].strip().splitlines()
    assert 5 <= len(summary) <= 25, summary
    joined = "\n".join(summary)
    assert "pairs matched" in joined and "QC verdict:" in joined and "gauge" in joined
    full = json.loads((out / "summary.json").read_text())
    # the demo's error and the QC report's use one gauge, named
    assert full["alignment_error"]["gauge"] in ("affine", "rigid")
    assert f"{full['alignment_error']['rms_voxels']:.3g} voxels" in joined


def test_align_and_fuse_summaries_name_their_outputs(tmp_path):
    align = {"input": "in.xml", "output": "solved.xml", "store": "ip.zarr", "detection": {"0/0": 10, "0/1": 12},
             "rounds": [{"transform": "rigid", "pairs": 1, "pairs_matched": 1, "final_error": 0.2}],
             "qc": {"verdict": "pass", "reasons": [], "report_uri": "qc.html"}}
    text = "\n".join(summary_lines("align", align, None, 5.0, "solved.summary.json"))
    assert "aligned XML: solved.xml" in text and "1/1 pairs matched" in text and "QC verdict: PASS" in text
    assert "interest points: 22 in 2 views" in text and "fused image" not in text
    fuse = {"output": "f.ome.zarr", "xml": "f.xml", "shape_zyx": [10, 20, 30], "blocks_written": 3, "units": 1}
    text = "\n".join(summary_lines("fuse", fuse, None, 5.0, "f.ome.zarr.summary.json"))
    assert "fused image: f.ome.zarr" in text and "10x20x30 voxels (z,y,x), 1 work unit, 3 blocks written" in text
    assert "aligned XML" not in text


def test_progress_artifact_writes_are_spaced_and_the_last_is_always_written(monkeypatch):
    """One write a second at most (each is an HTTP request in the flow's thread), the final
    value always; the command line's listeners still hear of every finished task."""
    from types import SimpleNamespace

    from flows import artifacts

    clock = [100.0]
    writes = []
    monkeypatch.setattr(artifacts, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(artifacts, "create_progress_artifact", lambda *a, **k: "id")
    monkeypatch.setattr(artifacts, "update_progress_artifact",
                        lambda artifact_id, pct, description=None: writes.append((clock[0], pct, description)))
    got = []
    with listening(got.append):
        p = artifacts.Progress(1000, "fusion work units")
        for _ in range(1000):  # 1000 tasks in 2.5 s
            clock[0] += 0.0025
            p.advance()
    assert len(got) == 1001
    assert writes[-1][1:] == (100.0, "fusion work units: 1000 of 1000")
    assert len(writes) == 3  # at 1.0 s, 2.0 s, and the last
    assert all(b[0] - a[0] >= artifacts.MIN_UPDATE_INTERVAL_S for a, b in zip(writes, writes[1:-1]))
    slow = []
    monkeypatch.setattr(artifacts, "update_progress_artifact", lambda *a, **k: slow.append(a))
    p = artifacts.Progress(3, "views detected")
    for _ in range(3):  # slower than one a second: every one written, as before
        clock[0] += 1.5
        p.advance()
    assert [a[1] for a in slow] == [100 / 3, 200 / 3, 100.0]


def _recording_writes(monkeypatch):
    """Progress artifact calls recorded as ("create" | "update", pct, description), in the order made."""
    from flows import artifacts

    writes = []
    monkeypatch.setattr(artifacts, "create_progress_artifact",
                        lambda pct, description=None: writes.append(("create", pct, description)) or "id")
    monkeypatch.setattr(artifacts, "update_progress_artifact",
                        lambda artifact_id, pct, description=None: writes.append(("update", pct, description)))
    return writes


def test_a_stage_done_within_the_interval_writes_its_bar_once_finished(monkeypatch):
    """Against the local API (writes queued): no bar at 0 % followed by the same bar at 100 %."""
    from flows import artifact_writer, artifacts

    writes = _recording_writes(monkeypatch)
    with artifact_writer.in_background():
        p = artifacts.Progress(3, "views detected")
        for _ in range(3):
            p.advance()
    assert writes == [("create", 100.0, "views detected: 3 of 3")]


def test_a_slow_stage_shows_its_bar_from_the_interval_on(monkeypatch):
    """The timer creates the bar at 0 % while the first task still runs; updates follow, the last at 100 %."""
    from flows import artifact_writer, artifacts

    monkeypatch.setattr(artifacts, "MIN_UPDATE_INTERVAL_S", 0.05)
    writes = _recording_writes(monkeypatch)
    with artifact_writer.in_background():
        p = artifacts.Progress(2, "fusion work units")
        time.sleep(0.3)
        artifact_writer.flush()
        assert writes == [("create", 0.0, "fusion work units: 0 of 2")]
        p.advance()
        p.advance()
    assert writes[1:] == [("update", 50.0, "fusion work units: 1 of 2"), ("update", 100.0, "fusion work units: 2 of 2")]


def test_a_stage_that_fails_writes_nothing_after_it_ends(monkeypatch):
    from flows import artifact_writer, artifacts

    monkeypatch.setattr(artifacts, "MIN_UPDATE_INTERVAL_S", 0.05)
    writes = _recording_writes(monkeypatch)

    class LostFuture:  # its state cannot be read: waiting for it raises
        @property
        def _final_state(self):
            raise RuntimeError("the task's worker died")

    with artifact_writer.in_background():
        with pytest.raises(RuntimeError, match="worker died"):
            artifacts.wait_with_progress([LostFuture()], "pair batches matched (rigid)")
        time.sleep(0.3)
    assert writes == []


def test_elsewhere_the_bar_is_created_at_once_in_the_flows_thread(monkeypatch):
    """Writes made at once (any API but the local one): created at 0 % as the stage starts, no timer thread."""
    from flows import artifacts

    writes = _recording_writes(monkeypatch)
    p = artifacts.Progress(2, "views detected")
    assert writes == [("create", 0.0, "views detected: 0 of 2")]
    assert not p._timer.is_alive()
    p.advance(2)
    assert writes[-1] == ("update", 100.0, "views detected: 2 of 2")
