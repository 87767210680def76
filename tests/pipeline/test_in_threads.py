"""rhapso_core.pipeline.in_threads: a loop's independent calls on the cores, results in input order."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from rhapso_core.pipeline.in_threads import available_cores, in_threads

VAR = contextvars.ContextVar("VAR", default="unset")


def test_results_in_input_order_whatever_finishes_first():
    # Earlier items sleep longer, so they finish last; the results still follow the items.
    items = list(range(6))
    got = in_threads(lambda i: (time.sleep(0.02 * (6 - i)), i * i)[1], items, workers=3)
    assert got == [i * i for i in items]


def test_calls_run_in_several_threads_and_see_the_callers_context():
    token = VAR.set("caller's")
    try:
        seen = in_threads(lambda _: (time.sleep(0.05), VAR.get(), threading.get_ident())[1:], range(4), workers=2)
    finally:
        VAR.reset(token)
    assert {v for v, _ in seen} == {"caller's"}
    assert len({t for _, t in seen}) == 2
    assert threading.get_ident() not in {t for _, t in seen}


def test_one_worker_or_one_item_runs_in_the_calling_thread():
    me = threading.get_ident()
    assert in_threads(lambda _: threading.get_ident(), range(3), workers=1) == [me] * 3
    assert in_threads(lambda _: threading.get_ident(), [0]) == [me]
    assert in_threads(lambda _: 1, []) == []


def test_first_failure_in_item_order_is_raised():
    def fn(i):
        if i in (1, 3):
            raise ValueError(f"item {i}")
        return i

    with pytest.raises(ValueError, match="item 1"):
        in_threads(fn, range(5), workers=4)


def test_available_cores_is_positive():
    assert available_cores() >= 1
