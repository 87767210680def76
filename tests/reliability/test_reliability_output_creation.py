"""Creating the fused image, stopped at any write, is resumed by the next plan; someone's data is not.

A full disk (or a killed run) can stop ``plan_fusion`` at any of the files that make the
empty image. The run's retry, or the user's re-run, must then take the folder for its
own and finish it exactly as a clean creation would; a folder holding another grid's
image or data that no fusion wrote is still refused.
"""

from __future__ import annotations

import dataclasses
import errno
import os

import pytest
from reliability_diskfull import DiskFull

from rhapso_core.fusion import FusionParams
from rhapso_core.io import ImageIOError, create_ome_zarr, read_root
from rhapso_core.pipeline import fuse
from tasks.policies import is_transient


@pytest.fixture(scope="module")
def xml(tmp_path_factory):
    from rhapso_core.synthetic import SyntheticParams, write_dataset

    root = tmp_path_factory.mktemp("fusion_creation")
    ds = write_dataset(root / "data", SyntheticParams(grid=(2, 1, 1), tile_size_xyz=(64, 32, 8), n_levels=1,
                                                      chunk_size_xyz=(32, 32, 8), overlap=0.25, blob_count=5,
                                                      fibre_count=0))
    return str(ds.xml)


def _tree(folder: str) -> dict[str, bytes]:
    files = {}
    for d, _, names in os.walk(folder):
        for name in names:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                files[os.path.relpath(p, folder)] = f.read()
    return files


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_a_creation_stopped_at_any_write_is_finished_by_the_next_plan(xml, tmp_path, ngff):
    params = FusionParams(ngff_version=ngff)
    clean = str(tmp_path / "clean.ome.zarr")
    plan = fuse.plan_fusion(xml, clean, params)
    reference = _tree(clean)
    writes = 0
    for n in range(1, 50):
        out = str(tmp_path / f"stopped{n}.ome.zarr")
        with pytest.MonkeyPatch.context() as mp:
            full = DiskFull(out, n).install(mp.setattr)
            try:
                fuse.plan_fusion(xml, out, params)
            except OSError as e:  # an OSError, so that the CLI's line gives the reason ("no space left")
                assert e.errno == errno.ENOSPC, e
            else:
                writes = full.seen
                break
        fuse.check_output_free(out)  # a re-run's first check: this is a fusion's folder
        again = fuse.plan_fusion(xml, out, params)  # the retry, or the re-run
        assert dataclasses.replace(again, out_uri=plan.out_uri) == plan
        assert _tree(out) == reference, f"stopped at write {n}"
    assert writes >= 3, "the creation wrote fewer files than the test stops it at"


def test_the_grid_record_is_the_first_thing_written(xml, tmp_path, monkeypatch):
    out = str(tmp_path / "fused.ome.zarr")
    DiskFull(out, 2).install(monkeypatch.setattr)
    with pytest.raises(OSError, match="No space left"):
        fuse.plan_fusion(xml, out, FusionParams())
    root = read_root(out)
    assert root is not None and not root.complete and fuse.GRID_ATTR in root.attributes


def test_another_grids_output_is_refused_and_left_as_it_is(xml, tmp_path):
    out = str(tmp_path / "fused.ome.zarr")
    fuse.plan_fusion(xml, out, FusionParams())
    before = _tree(out)
    fuse.check_output_free(out)  # a fusion output: the plan decides whether it is this one
    with pytest.raises(ImageIOError, match="another run"):
        fuse.plan_fusion(xml, out, FusionParams(voxel_size=(2.0, 2.0, 2.0)))
    assert _tree(out) == before


def test_an_unfinished_creation_of_another_grid_is_refused(xml, tmp_path):
    out = str(tmp_path / "fused.ome.zarr")
    create_ome_zarr(out, (4, 4, 4), "uint16", chunks_zyx=(4, 4, 4), voxel_size_zyx=(1, 1, 1),
                    attributes={fuse.GRID_ATTR: {"shape_zyx": [4, 4, 4]}})
    os.remove(os.path.join(out, ".zgroup"))  # as if stopped before the group was finished
    with pytest.raises(ImageIOError, match="another run"):
        fuse.plan_fusion(xml, out, FusionParams())


def test_data_no_fusion_wrote_is_refused_and_an_empty_folder_is_not(xml, tmp_path):
    theirs = tmp_path / "theirs.ome.zarr"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("someone's")
    with pytest.raises(ImageIOError, match="not a fusion output"):
        fuse.check_output_free(str(theirs))
    with pytest.raises(ImageIOError, match="another run"):
        fuse.plan_fusion(xml, str(theirs), FusionParams())
    assert (theirs / "notes.txt").read_text() == "someone's"
    empty = tmp_path / "empty.ome.zarr"
    empty.mkdir()  # what a creation stopped at its first write leaves
    fuse.check_output_free(str(empty))
    fuse.plan_fusion(xml, str(empty), FusionParams())


@pytest.mark.parametrize("code,retried", [(errno.ENOSPC, False), (errno.EDQUOT, False), (errno.EROFS, False),
                                          (errno.EIO, True), (errno.ECONNRESET, True)])
def test_a_full_or_read_only_disk_is_not_retried(code, retried):
    assert is_transient(OSError(code, os.strerror(code))) is retried


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_pyramid_levels_stopped_at_any_write_are_made_again_by_the_next_plan(xml, tmp_path, ngff):
    params = FusionParams(ngff_version=ngff, multiscale={"multiscale_chunk_size": (8, 8, 8)})
    clean = str(tmp_path / "clean.ome.zarr")
    fuse.plan_fusion(xml, clean, params)
    _, work = fuse.plan_pyramid(clean, params)
    assert len(work) >= 2, "the test needs more than one level to stop between"
    reference = _tree(clean)
    writes = 0
    for n in range(1, 60):
        out = str(tmp_path / f"stopped{n}.ome.zarr")
        fuse.plan_fusion(xml, out, params)
        with pytest.MonkeyPatch.context() as mp:
            full = DiskFull(out, n).install(mp.setattr)
            try:
                fuse.plan_pyramid(out, params)
            except OSError as e:  # an OSError, so that the CLI's line gives the reason ("no space left")
                assert e.errno == errno.ENOSPC, e
            else:
                writes = full.seen
                break
        assert fuse.plan_pyramid(out, params)[1] == work
        assert _tree(out) == reference, f"stopped at write {n}"
    assert writes >= 2 * len(work), "the levels' creation wrote fewer files than the test stops it at"
