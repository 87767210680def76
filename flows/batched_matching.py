"""Submit a round's view pairs as a few batches per worker slot and collect their records.

Kept out of ``flows/alignment.py`` on purpose: a deployment loads that file as a top-level
module (``alignment``), so Ray pickles its stage flows by value, and every global their
bodies name must be importable on the workers. A helper defined in that file is not
(``No module named 'alignment'``); one in the ``flows`` package is.
"""

from __future__ import annotations

from prefect_ray.context import remote_options

from flows import artifacts
from rhapso_core.cost import batch_pairs, stored_batch_memory
from rhapso_core.matching import MatchingParams
from rhapso_core.pipeline.match import stored_point_counts
from tasks import matching as matching_tasks
from tasks.policies import ray_hints


def match_in_batches(xml: str, store: str, pairs: list, label: str, matching: MatchingParams, slots: int,
                     progress: str) -> list:
    """Match ``pairs`` as :func:`rhapso_core.cost.batch_pairs` batches, each asking Ray for the memory
    of its largest pair's stored points (as ``rhapso plan`` predicts); records in the pairs' order."""
    batches = batch_pairs(list(pairs), slots)
    points = stored_point_counts(store, label, [v for pair in pairs for v in pair])
    futures = []
    for i, b in enumerate(batches):
        with remote_options(**ray_hints(stored_batch_memory(b, points))):
            futures.append(matching_tasks.match_pairs.submit(xml, store, b, label, matching, i))
    return matching_tasks.unbatch(artifacts.wait_with_progress(futures, progress), len(pairs))
