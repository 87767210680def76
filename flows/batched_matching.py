"""Submit a round's view pairs as a few batches per worker slot and collect their records.

Kept out of ``flows/alignment.py`` on purpose: a deployment loads that file as a top-level
module (``alignment``), so Ray pickles its stage flows by value, and every global their
bodies name must be importable on the workers. A helper defined in that file is not
(``No module named 'alignment'``); one in the ``flows`` package is.
"""

from __future__ import annotations

from flows import artifacts
from rhapso_core.matching import MatchingParams
from tasks import matching as matching_tasks


def match_in_batches(xml: str, store: str, pairs: list, label: str, matching: MatchingParams, slots: int,
                     progress: str) -> list:
    """Match ``pairs`` as :func:`tasks.matching.batch_pairs` batches; records in the pairs' order."""
    batches = matching_tasks.batch_pairs(list(pairs), slots)
    futures = [matching_tasks.match_pairs.submit(xml, store, b, label, matching, i) for i, b in enumerate(batches)]
    return matching_tasks.unbatch(artifacts.wait_with_progress(futures, progress), len(pairs))
