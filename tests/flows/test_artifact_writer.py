"""Against the local API, artifacts are written off the flow's thread (flows/artifact_writer.py):
in order, in the caller's context, every one of them by the time a top-level flow run returns,
attached to the run that made it; a failed write is a warning, not a failed run. Elsewhere they
are written at once, as before."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time

import pytest

from flows import artifact_writer

WHO = contextvars.ContextVar("who", default=None)


def test_writes_run_one_at_a_time_in_order_in_a_copy_of_the_callers_context():
    made, threads = [], set()
    with artifact_writer.in_background():
        for i in range(20):
            WHO.set(f"caller {i}")
            artifact_writer.submit(f"w{i}", lambda i=i: (made.append((i, WHO.get())), threads.add(threading.get_ident())))
        artifact_writer.flush()
        assert made == [(i, f"caller {i}") for i in range(20)]
    assert threading.get_ident() not in threads and len(threads) == 1


def test_flush_and_the_end_of_the_block_wait_for_a_write_in_progress():
    done = []
    with artifact_writer.in_background():
        artifact_writer.submit("slow", lambda: (time.sleep(0.3), done.append(1)))
        assert not done  # the caller did not wait
        artifact_writer.flush()
        assert done == [1]
        artifact_writer.submit("slow", lambda: (time.sleep(0.3), done.append(2)))
    assert done == [1, 2]


def test_a_flush_waits_at_most_its_timeout_and_names_what_is_still_queued(caplog):
    """An API gone away makes each write retry for about a minute: the run's end is not held for all of them."""
    release = threading.Event()
    made = []
    with caplog.at_level(logging.WARNING, logger="flows.artifact_writer"):
        with artifact_writer.in_background():
            artifact_writer.submit("stuck", release.wait)
            artifact_writer.submit("qc-report", lambda: made.append(1))
            t = time.monotonic()
            assert artifact_writer.flush(timeout=0.2) is False
            assert time.monotonic() - t < 5
            assert "2 Prefect artifact writes still queued" in caplog.text and "stuck, qc-report" in caplog.text
            release.set()
    assert made == [1]  # the block's own flush waited for what the first one left


@pytest.mark.parametrize("enabled", [False, None], ids=["in_background(False)", "outside"])
def test_elsewhere_a_write_is_made_at_once_in_the_callers_thread_and_its_error_is_the_callers(enabled):
    threads = []

    def broken():
        threads.append(threading.get_ident())
        raise RuntimeError("the API went away")

    block = artifact_writer.in_background(False) if enabled is False else contextlib.nullcontext()
    with block, pytest.raises(RuntimeError, match="the API went away"):
        artifact_writer.submit("qc-report", broken)
    assert threads == [threading.get_ident()]


def test_a_failed_write_is_a_warning_and_the_next_writes_still_run(caplog):
    made = []

    def broken():
        raise RuntimeError("the API went away")

    with caplog.at_level(logging.WARNING, logger="flows.artifact_writer"), artifact_writer.in_background():
        artifact_writer.submit("qc-report", broken)
        artifact_writer.submit("next", lambda: made.append(1))
        artifact_writer.flush()
    assert made == [1]
    assert "could not write the Prefect artifact qc-report: RuntimeError: the API went away" in caplog.text


@pytest.mark.usefixtures("prefect_harness")
def test_a_top_level_run_returns_with_its_and_its_subflows_artifacts_written_on_their_runs():
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    from flows import artifacts
    from flows.lean_flow import flow

    @flow(name="artifact-writer-sub")
    def sub(tag: str) -> str:
        artifacts.output_note("Sub", [tag], key=f"writer-sub-{tag}")
        p = artifacts.Progress(2, "units")
        p.advance(2)
        return flow_run.id

    @flow(name="artifact-writer-top")
    def top(tag: str) -> tuple[str, str]:
        sub_id = sub(tag)
        artifact_writer.submit("a slow write", time.sleep, 0.5)  # still queued when the function returns
        artifacts.output_note("Top", [tag], key=f"writer-top-{tag}")
        return flow_run.id, sub_id

    tag = f"t{time.monotonic_ns()}"
    with artifact_writer.in_background():
        top_id, sub_id = top(tag)  # no flush here: the run itself waited for them
        with get_client(sync_client=True) as client:
            found = {a.key: a for a in client.read_artifacts() if a.key and tag in a.key}
    with get_client(sync_client=True) as client:
        progress = [a for a in client.read_artifacts() if a.type == "progress" and str(a.flow_run_id) == sub_id]
    assert str(found[f"writer-top-{tag}"].flow_run_id) == top_id
    assert str(found[f"writer-sub-{tag}"].flow_run_id) == sub_id
    assert len(progress) == 1 and progress[0].data == 100.0 and progress[0].description == "units: 2 of 2"
