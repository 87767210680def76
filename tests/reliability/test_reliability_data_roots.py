"""The service's data roots: an XML whose paths resolve outside them is refused before anything runs.

Deployments (REST, events, discovery) run XMLs written by others; with data roots
configured (``runtime.data_roots`` or ``$RHAPSO_DATA_ROOTS``) every input the XML
names and every output must resolve inside one, symlinks and ``..`` resolved. Without
them the command line keeps its freedom (BigStitcher XMLs legitimately use ``../raw/``).
"""

from __future__ import annotations

import shutil

import pytest
from reliability_helpers import folder_hash

from flows.layout import alignment_outputs, guard_outputs
from rhapso_core.pipeline.input_guard import DATA_ROOTS_ENV, OutsideDataRootsError, configured_roots

SMALL = dict(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16))


@pytest.fixture
def split_dataset(write_dataset_copy, tmp_path):
    """The XML in ``root/xml/``, its tiles in ``elsewhere/raw/`` reached through ``../``-paths."""
    paths = write_dataset_copy("roots", **SMALL)
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "xml").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copytree(paths.images_root, elsewhere / "raw.ome.zarr")
    rel = "../../elsewhere/raw.ome.zarr"
    text = paths.xml.read_text()
    text = text.replace('<zarr type="relative">images.ome.zarr</zarr>', f'<zarr type="relative">{rel}</zarr>')
    (root / "xml" / "dataset.xml").write_text(text)
    return root, elsewhere


def test_paths_outside_the_roots_refused(split_dataset, monkeypatch):
    root, elsewhere = split_dataset
    xml = str(root / "xml" / "dataset.xml")
    out = alignment_outputs(str(root / "out" / "aligned.xml"))
    guard_outputs(xml, out)  # no roots: today's freedom
    monkeypatch.setenv(DATA_ROOTS_ENV, str(root))
    with pytest.raises(OutsideDataRootsError, match="image of view .*outside the data roots"):
        guard_outputs(xml, out)
    guard_outputs(xml, out, [str(root), str(elsewhere)])  # a parameter overrides the environment
    monkeypatch.setenv(DATA_ROOTS_ENV, f"{root},{elsewhere}")
    guard_outputs(xml, out)
    with pytest.raises(OutsideDataRootsError, match="aligned.xml"):
        guard_outputs(xml, alignment_outputs(str(elsewhere / ".." / "out" / "aligned.xml")))


def test_symlink_out_of_the_root_refused(split_dataset, monkeypatch):
    root, elsewhere = split_dataset
    (root / "escape").symlink_to(elsewhere, target_is_directory=True)
    xml = root / "xml" / "dataset.xml"
    xml.write_text(xml.read_text().replace("../../elsewhere/raw.ome.zarr", "../escape/raw.ome.zarr"))
    monkeypatch.setenv(DATA_ROOTS_ENV, str(root))
    with pytest.raises(OutsideDataRootsError, match="elsewhere.raw.ome.zarr.*outside the data roots"):
        guard_outputs(str(xml), alignment_outputs(str(root / "out" / "a.xml")))
    assert configured_roots() == [str(root)] and configured_roots(["s3://b/x"]) == ["s3://b/x"]


def test_flow_refuses_before_it_writes(rel_harness, split_dataset, monkeypatch):
    """As a deployment runs it: the stitch flow with runtime.data_roots set."""
    from flows.stitch import stitch

    root, elsewhere = split_dataset
    before = folder_hash(elsewhere)
    with pytest.raises(OutsideDataRootsError):
        stitch(str(root / "xml" / "dataset.xml"), str(root / "out"),
               overrides=[f"runtime.data_roots=[{root}]", "runtime.use_ray=false"])
    assert not (root / "out").exists() and folder_hash(elsewhere) == before
