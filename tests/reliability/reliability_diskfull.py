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


def main() -> int:
    folder, n, count_file = os.path.realpath(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    argv = sys.argv[sys.argv.index("--") + 1:]
    seen = [0]

    def under(path) -> bool:
        try:
            return os.path.realpath(os.fspath(path)).startswith(folder + os.sep)
        except TypeError:  # a file descriptor
            return False

    def tick(path) -> None:
        if under(path):
            seen[0] += 1
            if n and seen[0] >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    real_open, real_replace, real_rename = io.open, os.replace, os.rename

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            tick(file)
        return real_open(file, mode, *a, **k)

    def replace(src, dst, *a, **k):
        tick(dst)
        return real_replace(src, dst, *a, **k)

    def rename(src, dst, *a, **k):
        tick(dst)
        return real_rename(src, dst, *a, **k)

    builtins.open = io.open = open_
    os.replace, os.rename = replace, rename

    def report() -> None:
        with real_open(count_file, "w") as f:
            f.write(str(seen[0]))

    atexit.register(report)
    from rhapso_cli.main import cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
