"""The detection stage keeps every worker of a thread pool on chunks while there are chunks.

Each view's store task waits for that view's chunks; a pool runs tasks in submission order, so
a store submitted between views would hold a worker while it waited. Checked on the chunks'
own clock: with two workers, at least two chunks must run at the same time.
"""

from __future__ import annotations

import threading
import time

from prefect.task_runners import ThreadPoolTaskRunner

from flows.alignment import detection_stage
from rhapso_core.config import DetectionParams
from rhapso_core.pipeline import detect

# Each chunk is held this long, so that two chunks that may overlap do, on any machine: a
# worker starts its next task within milliseconds.
HOLD_S = 0.4


def test_two_workers_detect_two_chunks_at_once(prefect_harness, small_dataset, tmp_path, monkeypatch):
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()
    real = detect.run_chunk

    def timed(*args, **kwargs):
        t0 = time.monotonic()
        out = real(*args, **kwargs)
        time.sleep(HOLD_S)
        with lock:
            spans.append((t0, time.monotonic()))
        return out

    monkeypatch.setattr(detect, "run_chunk", timed)
    params = DetectionParams(label="beads", sigma=1.8, threshold=0.01)
    counts = detection_stage.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        str(small_dataset.xml), str(tmp_path / "points.zarr"), params)
    assert len(counts) == 6 and all(n > 0 for n in counts.values())
    assert len(spans) >= 6
    spans.sort()
    overlapping = sum(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    assert overlapping >= len(spans) // 2, f"chunks ran one at a time: {spans}"
