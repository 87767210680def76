"""The after-solve check: every overlap measured before and after each round; tiles made worse reverted.

See :mod:`rhapso_core.verify.guard`.
"""

from rhapso_core._lazy import lazy_exports
from rhapso_core.verify.params import VerifyParams

__getattr__, __dir__ = lazy_exports(__name__, {
    "rhapso_core.verify.guard": ("OverlapCheck", "TileRevert", "VerifyReport", "choose_reverts", "verify_round"),
})

__all__ = ["OverlapCheck", "TileRevert", "VerifyParams", "VerifyReport", "choose_reverts", "verify_round"]
