from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CELLFINDER_CH0 = SHARED / "fixtures" / "real" / "cellfinder_crop_planes" / "ch0"


@pytest.fixture
def cellfinder_ch0() -> Path:
    if not CELLFINDER_CH0.is_dir():
        pytest.skip(f"real volume fixture absent: {CELLFINDER_CH0}")
    return CELLFINDER_CH0
