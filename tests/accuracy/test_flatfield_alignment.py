"""Vignetted tiles aligned through BigStitcher's flat-field loader (docs/accuracy.md, "Vignetting").

The matrix's ``vignette40`` cell (tiles dimmed by ``1 - 0.4 (u^2 + w^2)``, camera offset 100):
aligned with defaults as generated, the fall-off pulls each tile's points toward its centre
(measured 0.227 voxel RMS, max 0.298); wrapped in a ``spimreconstruction.wrapped.flatfield``
loader whose bright image follows the same fall-off and whose dark image is the offset, every
stage reads corrected pixels (measured 0.004, as when the tiles are divided by their true
transmission before alignment). Tolerances: corrected under 0.02 voxel RMS; uncorrected over
0.1, so that the test would notice a loader that corrected nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench_accuracy as ba  # noqa: E402


def _wrap_with_flat_field(xml: Path, out: Path, falloff: float) -> Path:
    from rhapso_core.spimdata import FlatFieldFiles, FlatFieldImageLoader, load_xml, save_xml
    from rhapso_core.synthetic.intensity import vignetting_profile

    sd = load_xml(xml)
    nx, ny, _ = sd.setup_of(next(iter(sd.views()))).size
    # A bright image as a microscope's calibration would give it (a uniform sample seen through
    # the same objective, above the camera offset), and a dark image of the offset alone.
    tifffile.imwrite(xml.parent / "bright.tif", (100.0 + 900.0 * vignetting_profile(ny, nx, falloff)).astype(np.float32))
    tifffile.imwrite(xml.parent / "dark.tif", np.full((ny, nx), 100.0, np.float32))
    files = tuple(FlatFieldFiles(t, s, bright="bright.tif", dark="dark.tif") for t, s in sd.views())
    save_xml(sd.replace(image_loader=FlatFieldImageLoader(inner=sd.image_loader, flatfields=files)), out)
    return out


def test_a_flat_field_loader_removes_the_vignetting_bias(tmp_path):
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline.inprocess import align_in_process
    from rhapso_core.synthetic.scoring import score

    cell = next(c for c in ba.CELLS if c.name == "vignette40")
    paths = ba.make_dataset(cell, tmp_path / "data")
    wrapped = _wrap_with_flat_field(Path(paths.xml), tmp_path / "data" / "dataset_ff.xml", cell.synth["vignetting"])
    rms = {}
    for name, xml in (("raw", paths.xml), ("corrected", wrapped)):
        r = align_in_process(str(xml), str(tmp_path / name), PipelineParams())
        rms[name] = score(paths.ground_truth, r.xml, gauge="rigid").rms_voxels
    assert rms["corrected"] < 0.02, rms
    assert rms["raw"] > 0.1, rms


def test_an_estimated_flat_field_removes_it_when_the_camera_offset_is_given(tmp_path):
    """``alignment.flatfield: estimate`` with ``intensity.dark_level`` 100 (the generator's camera
    offset): the flat field is estimated from the tiles at their stage positions and every stage
    reads through it. Measured on this cell: 0.006 voxel RMS (0.227 as generated). Tolerance 0.02."""
    from rhapso_core.config import PipelineParams
    from rhapso_core.pipeline.flatfield_input import INPUT_NAME
    from rhapso_core.pipeline.inprocess import align_in_process
    from rhapso_core.spimdata import FlatFieldImageLoader, load_xml
    from rhapso_core.synthetic.scoring import score

    cell = next(c for c in ba.CELLS if c.name == "vignette40")
    paths = ba.make_dataset(cell, tmp_path / "data")
    p = PipelineParams.model_validate({"alignment": {"flatfield": "estimate"}, "intensity": {"dark_level": 100}})
    r = align_in_process(str(paths.xml), str(tmp_path / "run"), p)
    assert score(paths.ground_truth, r.xml, gauge="rigid").rms_voxels < 0.02
    # The solved XML reads through the written estimate, as fusion and BigStitcher will.
    solved = load_xml(r.xml)
    assert isinstance(solved.image_loader, FlatFieldImageLoader)
    assert (tmp_path / "run" / "flatfield" / INPUT_NAME).exists()
    bright = solved.image_location(solved.views()[0]).flatfield.bright
    img = tifffile.imread(bright)
    # The estimate's fall-off at the middle of an edge against the truth, 1 - 0.4 = 0.6 of the centre.
    ny, nx = img.shape
    assert abs((img[ny // 2, 0] - 100.0) / (img[ny // 2, nx // 2] - 100.0) - 0.6) < 0.02
