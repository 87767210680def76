"""The image check's quantiles come from scipy.special (not scipy.stats, whose import is 0.3-0.45 s
of every align and stitch command): the same bits as scipy.stats' norm.sf and f.isf."""

import numpy as np
import pytest
from scipy import stats

from rhapso_core.pipeline import pair_check


def test_alpha_is_the_normal_tail_of_three_sd():
    assert pair_check.ALPHA == 2.0 * stats.norm.sf(3.0)  # exact: no tolerance


@pytest.mark.parametrize("alpha", [pair_check.ALPHA, 0.05, 1e-6, 0.5, 0.987])
def test_points_vs_phase_threshold_is_scipy_stats_f_quantile(alpha):
    # The threshold compare_points_with_phase computes for k measured axes and n matches.
    rng = np.random.default_rng(3)
    for k in (1, 2, 3):
        for n in [*range(k + 1, 40), 97, 1000, 123457]:
            ours = float(pair_check.fdtri(k, n - k, 1.0 - alpha))
            assert ours == stats.f.isf(alpha, k, n - k)  # exact: no tolerance
    for q in rng.uniform(1e-9, 0.999, 50):
        assert float(pair_check.fdtri(2, 17, 1.0 - q)) == stats.f.isf(q, 2, 17)
