"""The after-solve check: every overlap measured before and after each round; tiles made worse reverted.

See :mod:`rhapso_core.verify.guard`.
"""

from rhapso_core.verify.guard import OverlapCheck, TileRevert, VerifyReport, choose_reverts, verify_round
from rhapso_core.verify.params import VerifyParams

__all__ = ["OverlapCheck", "TileRevert", "VerifyParams", "VerifyReport", "choose_reverts", "verify_round"]
