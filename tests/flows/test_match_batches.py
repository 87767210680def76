"""Matching runs pairs in batches: every pair exactly once, records back in the pairs' order."""

from __future__ import annotations

import pytest

from flows.runtime import worker_slots
from rhapso_core.config import RuntimeParams
from rhapso_core.cost import BATCHES_PER_SLOT, MIN_PAIRS_PER_BATCH
from tasks.matching import batch_pairs, unbatch


@pytest.mark.parametrize("n_pairs, slots, expected", [
    (0, 4, 0), (1, 4, 1), (3, 4, 3),  # fewer pairs than slots: a pair a batch
    (7, 1, 1), (11, 2, 2),  # a 6-tile grid on 2 cores: one batch a slot, not 8 batches of 1-2 pairs
    (40, 4, 8), (128, 2, 8), (1000, 3, 12),  # enough pairs: up to 4 batches a slot, 4 pairs or more each
    (38, 560, 38),
])
def test_batches_cover_every_pair_once_and_unbatch_restores_order(n_pairs, slots, expected):
    pairs = [((0, i), (0, i + 1)) for i in range(n_pairs)]
    batches = batch_pairs(pairs, slots)
    assert len(batches) == expected
    assert len(batches) <= BATCHES_PER_SLOT * slots
    assert len(batches) % slots == 0 or len(batches) == n_pairs, "every slot as many batches"
    if n_pairs >= slots * MIN_PAIRS_PER_BATCH:
        assert min(len(b) for b in batches) >= MIN_PAIRS_PER_BATCH
    assert sorted(p for b in batches for p in b) == pairs
    sizes = [len(b) for b in batches]
    assert not sizes or max(sizes) - min(sizes) <= 1, "round-robin: batch sizes differ by at most one"
    # Stand-in records: each batch's results in its own order, as the task returns them.
    records = unbatch([[("rec", p) for p in b] for b in batches], n_pairs)
    assert records == [("rec", p) for p in pairs]


def test_worker_slots_without_ray():
    assert worker_slots(RuntimeParams(use_ray=False, num_cpus=3)) == 3
    assert worker_slots(RuntimeParams(use_ray=False)) >= 1
