"""The output guard covers intensity coefficients: a run never creates or replaces an input's."""

from __future__ import annotations

import pytest
from intensity_data import make_dataset

from flows.fusion import intensity_xml_path
from flows.layout import alignment_outputs, fusion_intensity_outputs, guard_outputs
from rhapso_core.intensity.model import ViewIntensity
from rhapso_core.intensity.store import default_container, write_coefficients
from rhapso_core.pipeline.input_guard import InputOverwriteError, dataset_inputs, canonical_path
from rhapso_core.spimdata import load_xml


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("guard") / "ds", seed=0, grid=(2, 1, 1), tile_gain_spread=0.0,
                        vignetting=0.0)


def test_outputs_name_the_containers_they_write(tmp_path):
    out = str(tmp_path / "out" / "aligned.xml")
    assert default_container(out) in [p for p, _ in alignment_outputs(out)]
    fused = str(tmp_path / "out" / "fused.ome.zarr")
    paths = [p for p, _ in fusion_intensity_outputs(fused)]
    assert paths == [intensity_xml_path(fused), default_container(intensity_xml_path(fused))]


def test_an_inputs_coefficients_are_never_written(ds, tmp_path):
    container = default_container(ds.xml)
    assert canonical_path(container) not in {i.path for i in dataset_inputs(ds.xml)}  # none yet: nothing to protect
    sd = load_xml(ds.xml)
    write_coefficients(container, {tuple(v): ViewIntensity.affine((96, 96, 24), 1.0, 0.0) for v in sd.views()})
    assert canonical_path(container) in {i.path for i in dataset_inputs(ds.xml)}
    # An alignment whose output XML would share the input's container (its staged name, in the input's
    # folder) and a fusion whose corrected-input XML would be the input XML itself are refused.
    staged = ds.xml.replace("true.xml", ".true.staged.xml")
    with pytest.raises(InputOverwriteError, match="intensity coefficients"):
        guard_outputs(ds.xml, [(default_container(staged), "the intensity coefficients it writes")])
    fused_beside = ds.xml.replace("true.xml", "true.ome.zarr")  # -> true.input.xml, a different file: allowed
    guard_outputs(ds.xml, fusion_intensity_outputs(fused_beside))


def test_fusion_never_writes_its_corrected_copy_over_the_input(ds):
    """Fusing ``D/fused.input.xml`` into ``D/fused.ome.zarr`` with intensity.enabled would replace the input XML."""
    import shutil

    xml = ds.xml.replace("true.xml", "fused.input.xml")
    shutil.copy(ds.xml, xml)
    with pytest.raises(InputOverwriteError, match="is the input XML"):
        guard_outputs(xml, fusion_intensity_outputs(xml.replace("fused.input.xml", "fused.ome.zarr")))
