"""Nothing a user owns is overwritten: outputs that are, contain or lie inside an input are refused.

Each case runs the ``rhapso`` command in this process on a small generated dataset,
hashes the dataset's folder before and after (0 changed bytes tolerated) and expects
exit 2 with one error line, whatever the names, symlinks or ``--overwrite``.
"""

from __future__ import annotations

import os
import shutil

import pytest
from reliability_cli import refused
from reliability_helpers import FIGURES

from rhapso_core.pipeline.input_guard import InputOverwriteError, InputPath, check_outputs, dataset_inputs, canonical_path

SMALL = dict(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16))
_CASES: list[str] = []


def _record(case: str, line: str) -> None:
    _CASES.append(case)
    FIGURES["outputs touching an input, refused"] = f"{len(_CASES)} ({', '.join(_CASES)})"


@pytest.fixture
def small(write_dataset_copy, request):
    return write_dataset_copy("guard-" + request.node.name.replace("[", "-").rstrip("]"), **SMALL)


def test_stitch_into_the_folder_of_an_input_named_like_an_output(small):
    """Case 1: ``rhapso stitch X/fused.xml --out X`` would replace the input XML with the fused image's."""
    xml = small.root / "fused.xml"
    os.replace(small.xml, xml)
    line = refused(small.root, "stitch", xml, "--out", small.root, "--no-ray", must_name=str(xml))
    assert "is the input XML" in line
    _record("stitch X/fused.xml --out X", line)


def test_output_reaching_the_input_through_a_symlink(small, tmp_path):
    """Case 2: ``--out LINK/dataset.xml --overwrite`` with LINK -> the dataset's folder."""
    link = tmp_path / "link"
    link.symlink_to(small.root, target_is_directory=True)
    line = refused(small.root, "align", small.xml, "--out", link / "dataset.xml", "--overwrite", "--no-ray",
                   must_name=str(small.xml))
    assert "resolves to" in line
    _record("align --out SYMLINK/dataset.xml --overwrite", line)


@pytest.mark.parametrize("where", ["tile", "inside tile", "images root"])
def test_fuse_over_an_input_tile_with_overwrite(small, where):
    """Case 3: ``rhapso fuse IN.xml --out <a tile's zarr> --overwrite`` must never reach the tile."""
    tile = small.tiles[(0, 1)]
    out = {"tile": tile, "inside tile": tile / "fused.ome.zarr", "images root": small.images_root}[where]
    line = refused(small.root, "fuse", small.xml, "--out", out, "--overwrite", "--no-ray", must_name=str(out))
    assert "image of view" in line
    _record(f"fuse --out <{where}> --overwrite", line)


def test_other_commands_refuse_the_input(small):
    """The same guard on the single-stage commands (``xml``, ``detect``, ``solve``)."""
    refused(small.root, "xml", small.xml, "--out", small.root / "." / "dataset.xml", "--overwrite",
            must_name="dataset.xml")
    refused(small.root, "detect", small.xml, "--store", small.tiles[(0, 0)], "--no-ray", must_name="--store")
    refused(small.root, "solve", small.xml, "--out", small.xml, "--overwrite", "--no-ray", must_name="--out")


def test_inputs_of_a_dataset_are_resolved(small, tmp_path):
    """Unit: the XML, each tile group and a listed point store are inputs, with symlinks resolved."""
    link = tmp_path / "via-link"
    link.symlink_to(small.root, target_is_directory=True)
    found = {i.path for i in dataset_inputs(str(link / "dataset.xml"))}
    assert found == {canonical_path(small.xml)} | {canonical_path(t) for t in small.tiles.values()}
    # Beside an input is allowed: the aligned XML and the point store in the dataset's folder.
    check_outputs([(str(small.root / "dataset.aligned.xml"), "--out"),
                   (str(small.root / "interestpoints.zarr"), "store")], dataset_inputs(str(small.xml)))
    with pytest.raises(InputOverwriteError, match="contains"):
        check_outputs([(str(small.root), "--out")], [InputPath(canonical_path(small.xml), "the input XML")])
    # URIs: compared after normalising '..' and a trailing slash.
    inputs = [InputPath(canonical_path("s3://b/ds/tiles.zarr/t0.zarr"), "a tile")]
    with pytest.raises(InputOverwriteError, match="is inside"):
        check_outputs([("s3://b/ds/x/../tiles.zarr/t0.zarr/fused/", "--out")], inputs)
    check_outputs([("s3://b/ds/tiles.zarr/t0.zarr2", "--out"), ("s3://other/ds/tiles.zarr/t0.zarr", "--out")], inputs)


def test_listed_interest_points_are_inputs(small):
    """An XML listing interest points makes ``interestpoints.n5`` beside it an input."""
    from rhapso_core.spimdata import InterestPointsFile, load_xml, save_xml

    sd = load_xml(small.xml)
    save_xml(sd.with_interest_points([InterestPointsFile(0, 0, "beads", "", "tpId_0_viewSetupId_0/beads")]),
             small.xml)
    n5 = small.root / "interestpoints.n5"
    assert canonical_path(n5) in {i.path for i in dataset_inputs(str(small.xml))}
    shutil.rmtree(n5, ignore_errors=True)
    refused(small.root, "align", small.xml, "--out", small.root / "again.xml", "--no-ray",
            must_name="interestpoints.n5")
