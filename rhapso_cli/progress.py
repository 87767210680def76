"""The command's progress display: one updating line per stage on a terminal (units done /
total, rate, time left), plain log lines otherwise; it remembers each stage's time for the
summary. Written to stderr, so stdout stays the summary (or the JSON with ``--json``).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from flows.progress import ProgressEvent


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


@dataclass
class StageTime:
    what: str
    total: int
    done: int = 0
    seconds: float = 0.0


@dataclass
class ProgressDisplay:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool | None = None
    min_interval_s: float = 0.2  # a terminal line is redrawn at most this often
    stages: list[StageTime] = field(default_factory=list)

    def __post_init__(self):
        if self.tty is None:
            isatty = getattr(self.stream, "isatty", None)
            self.tty = bool(isatty and isatty())
        self._lock = threading.Lock()
        self._open_line = False
        self._last_draw = 0.0
        self._last_logged_quarter = -1
        self.started = time.monotonic()

    def __call__(self, ev: ProgressEvent) -> None:
        with self._lock:
            stage = self.stages[-1] if self.stages else None
            if stage is None or stage.what != ev.what or ev.done < stage.done:
                self._close_line()
                stage = StageTime(ev.what, ev.total)
                self.stages.append(stage)
                self._last_logged_quarter = -1
            stage.done, stage.seconds = ev.done, ev.elapsed_s
            finished = ev.done >= ev.total
            text = self._line(ev)
            if self.tty:
                now = time.monotonic()
                if finished or ev.done == 0 or now - self._last_draw >= self.min_interval_s:
                    self.stream.write("\r\033[K" + text)
                    self._open_line = True
                    self._last_draw = now
                if finished:
                    self._close_line()
            else:  # a log: the start, each quarter, the end
                quarter = 4 * ev.done // max(ev.total, 1)
                if ev.done == 0 or finished or quarter > self._last_logged_quarter:
                    self.stream.write(text + "\n")
                    self._last_logged_quarter = quarter
            self.stream.flush()

    def note(self, text: str) -> None:
        """A message of the run (e.g. where its tasks run), on its own line."""
        with self._lock:
            self._close_line()
            self.stream.write(f"  {text}\n")
            self.stream.flush()

    def _line(self, ev: ProgressEvent) -> str:
        text = f"  {ev.what}: {ev.done}/{ev.total}"
        if ev.done >= ev.total:
            return text + f" in {_duration(ev.elapsed_s)}"
        if ev.done > 0 and ev.elapsed_s > 0:
            rate = ev.done / ev.elapsed_s
            left = (ev.total - ev.done) / rate
            text += f"  {rate:.2f}/s" if rate < 10 else f"  {rate:.0f}/s"
            text += f"  ~{_duration(left)} left"
        return text

    def _close_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

    def close(self) -> None:
        with self._lock:
            self._close_line()
            self.stream.flush()
