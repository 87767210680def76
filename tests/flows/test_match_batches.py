"""Matching runs pairs in batches: every pair exactly once, records back in the pairs' order."""

from __future__ import annotations

import pytest

from flows.runtime import worker_slots
from rhapso_core.config import RuntimeParams
from tasks.matching import batch_pairs, unbatch


@pytest.mark.parametrize("n_pairs, slots", [(0, 4), (1, 4), (7, 1), (128, 2), (38, 560), (1000, 3)])
def test_batches_cover_every_pair_once_and_unbatch_restores_order(n_pairs, slots):
    pairs = [((0, i), (0, i + 1)) for i in range(n_pairs)]
    batches = batch_pairs(pairs, slots)
    assert len(batches) == min(n_pairs, 4 * slots) or (n_pairs == 0 and len(batches) == 0)
    assert sorted(p for b in batches for p in b) == pairs
    sizes = [len(b) for b in batches]
    assert not sizes or max(sizes) - min(sizes) <= 1, "round-robin: batch sizes differ by at most one"
    # Stand-in records: each batch's results in its own order, as the task returns them.
    records = unbatch([[("rec", p) for p in b] for b in batches], n_pairs)
    assert records == [("rec", p) for p in pairs]


def test_worker_slots_without_ray():
    assert worker_slots(RuntimeParams(use_ray=False, num_cpus=3)) == 3
    assert worker_slots(RuntimeParams(use_ray=False)) >= 1
