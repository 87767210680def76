"""Running the ``rhapso`` command in this process and checking a refusal (exit 2, one line, input intact)."""

from __future__ import annotations

import contextlib
import io

from reliability_helpers import folder_hash

from rhapso_cli.main import main


def run_cli(*argv) -> tuple[int, str, str]:
    """``rhapso ARGV`` in this process: (exit status, stdout, stderr)."""
    # Not pytest's capsys: Prefect's console log handler keeps the stream it first
    # saw, and capsys closes its streams after each test.
    out_buf, err_buf = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
        rc = main([str(a) for a in argv])
    return rc, out_buf.getvalue(), err_buf.getvalue()


def refused(input_root, *argv, must_name: str = "") -> str:
    """Run ``rhapso ARGV``; expect exit 2, exactly one stderr line (naming ``must_name``; indented
    display lines aside), and the folder ``input_root`` byte-identical afterwards (0 changed bytes
    tolerated). Returns the line."""
    before = folder_hash(input_root)
    rc, _, err = run_cli(*argv)
    after = folder_hash(input_root)
    # The command's own display lines (indented: progress, where its tasks run) may precede the error.
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln[0].isspace()]
    assert after == before, f"the input folder {input_root} was modified (rc={rc}, stderr {err[-600:]!r})"
    assert rc == 2, f"expected exit 2, got {rc}: {err[-1500:]!r}"
    assert len(lines) == 1, f"expected one error line, got {len(lines)}: {err[-1500:]!r}"
    assert lines[0].startswith(f"rhapso {argv[0]}: error: "), lines[0]
    assert must_name in lines[0], f"the error does not name {must_name!r}: {lines[0]}"
    return lines[0]
