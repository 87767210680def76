"""The alignment flow's intensity step (intensity.enabled) on tiles with gains and vignetting."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.heavy
def test_alignment_flow_corrects_intensity(prefect_harness, tmp_path):
    from flows.alignment import alignment
    from rhapso_core.intensity.store import default_container
    from rhapso_core.intensity.xml import read_intensity_adjustments
    from rhapso_core.spimdata import load_xml
    from rhapso_core.synthetic import GroundTruth, SyntheticParams, write_dataset

    paths = write_dataset(tmp_path / "data", SyntheticParams(
        grid=(3, 2, 1), tile_size_xyz=(160, 160, 48), overlap=0.2, n_levels=2, seed=7,
        tile_gain_spread=0.15, vignetting=0.15))
    out = str(tmp_path / "out" / "aligned.xml")
    result = alignment(str(paths.xml), out, overrides=["runtime.num_cpus=2", "intensity.enabled=true",
                                                       "intensity.dark_level=100"])
    summary = result["intensity"]
    assert summary["views"] == 6 and Path(default_container(out)).is_dir()
    # The fitted gains undo the true ones: a_k g_k equal across views within 2 % (gauge: mean brightness).
    truth = GroundTruth.load(paths.ground_truth)
    adj = read_intensity_adjustments(load_xml(out))
    eff = [adj[v.view_id][0] * v.intensity_gain for v in truth.views]
    assert (max(eff) - min(eff)) / (sum(eff) / len(eff)) < 0.02, eff
    # The QC report carries the section.
    assert "Intensity correction" in Path(result["qc"]["report_uri"]).read_text()
