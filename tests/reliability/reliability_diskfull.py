"""Run ``rhapso ARGV`` with a disk that fills up: every file write under a folder fails with
ENOSPC from the N-th one on (test-only; a tmpfs of a chosen size would need mount rights).

    python reliability_diskfull.py FOLDER N COUNT_FILE -- ARGV...

Writes are counted where Python opens a file for writing (``open``/``io.open``, which
pathlib, zarr's local store, lxml-via-file-objects and ``tempfile`` all reach) and where
a finished file is renamed into place (``os.replace`` / ``os.rename``): the two points a
full disk shows up as ``OSError(ENOSPC)``. ``N = 0`` only counts. The number of writes seen is
written to COUNT_FILE at exit, so a test can draw N from a clean run's count.
"""

from __future__ import annotations

import atexit
import builtins
import errno
import io
import os
import sys


class DiskFull:
    """Counts the file writes under ``folder``; from the ``n``-th on (0: never) each fails with ENOSPC.

    ``install(patch)`` hooks Python's write points with ``patch(obj, name, value)``:
    ``setattr`` for a whole process, pytest's ``monkeypatch.setattr`` for one test.
    """

    def __init__(self, folder: str, n: int):
        self.folder, self.n, self.seen = os.path.realpath(folder), int(n), 0
        self.real_open, self.real_replace, self.real_rename = io.open, os.replace, os.rename

    def _under(self, path) -> bool:
        try:
            return os.path.realpath(os.fspath(path)).startswith(self.folder + os.sep)
        except TypeError:  # a file descriptor
            return False

    def _tick(self, path) -> None:
        if self._under(path):
            self.seen += 1
            if self.n and self.seen >= self.n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    def install(self, patch=setattr) -> DiskFull:
        def open_(file, mode="r", *a, **k):
            if any(c in mode for c in "wax+"):
                self._tick(file)
            return self.real_open(file, mode, *a, **k)

        def replace(src, dst, *a, **k):
            self._tick(dst)
            return self.real_replace(src, dst, *a, **k)

        def rename(src, dst, *a, **k):
            self._tick(dst)
            return self.real_rename(src, dst, *a, **k)

        patch(builtins, "open", open_)
        patch(io, "open", open_)
        patch(os, "replace", replace)
        patch(os, "rename", rename)
        return self


def main() -> int:
    folder, n, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    argv = sys.argv[sys.argv.index("--") + 1:]
    disk = DiskFull(folder, n).install()

    def report() -> None:
        with disk.real_open(count_file, "w") as f:
            f.write(str(disk.seen))

    atexit.register(report)
    from rhapso_cli.main import cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
