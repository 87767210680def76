"""Bad input catalogue: each input gets one clear error line (exit 2) or a documented graceful result.

Refusals go through the ``rhapso stitch`` command in this process (tasks in
threads, the session's Prefect API). Every case hashes the input folder before
and after: the input is never modified (0 changed bytes tolerated).

Graceful results (the run completes, exit 0):

* all-zero or all-NaN tile: no interest points there; the tile keeps its metadata
  (input) registration exactly, QC flags it, the other tiles are still aligned;
* a single tile: nothing to match; registration unchanged, fused = the tile;
* tiles that do not overlap: no pairs; registrations unchanged, QC flags them.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil

import numpy as np
import pytest
import zarr
from reliability_helpers import FIGURES, folder_hash, registrations

from rhapso_cli.main import main

#: Small 2x1 tiles for cases refused before or early in the run.
SMALL = dict(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16))

_TRIED: list[str] = []


def _record(case: str, outcome: str) -> None:
    _TRIED.append(case)
    FIGURES["bad inputs tried"] = f"{len(_TRIED)} ({', '.join(_TRIED)})"
    FIGURES[f"bad input: {case}"] = outcome


def _stitch_cli(xml, out, *extra) -> tuple[int, str, str]:
    # Not pytest's capsys: Prefect's console log handler keeps the stream it first
    # saw, and capsys closes its streams after each test.
    out_buf, err_buf = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
        rc = main(["-v", "stitch", str(xml), "--out", str(out), "--no-ray", "--num-cpus", "2", "--json", *extra])
    return rc, out_buf.getvalue(), err_buf.getvalue()


def _refused(paths, out, must_name: str, *extra, case: str) -> str:
    """Run the CLI on ``paths`` (a dataset), expect exit 2 and one error line naming ``must_name``."""
    before = folder_hash(paths.root)
    rc, _, err = _stitch_cli(paths.xml, out, *extra)
    assert folder_hash(paths.root) == before, f"{case}: the input folder was modified"
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("rhapso stitch: error:")]
    assert rc == 2 and lines, f"{case}: expected exit 2 with an error line, got rc={rc}, stderr tail {err[-800:]!r}"
    msg = lines[-1]
    assert must_name in msg, f"{case}: error does not name {must_name!r}: {msg}"
    assert len(msg) > len("rhapso stitch: error: ") + 20, msg
    _record(case, f"refused: {msg.removeprefix('rhapso stitch: error: ')[:160]}")
    return msg


@pytest.fixture
def small(write_dataset_copy, request):
    return write_dataset_copy(request.node.name.replace("[", "-").rstrip("]"), **SMALL)


def test_truncated_xml(rel_harness, small, tmp_path):
    text = small.xml.read_text()
    small.xml.write_text(text[: len(text) // 2])
    msg = _refused(small, tmp_path / "out", str(small.xml), case="truncated XML")
    assert "truncated" in msg or "malformed" in msg
    assert not (tmp_path / "out").exists(), "refused run wrote output"


def test_malformed_xml_value(rel_harness, small, tmp_path):
    small.xml.write_text(small.xml.read_text().replace("<size>64 64 16</size>", "<size>64 sixty 16</size>", 1))
    msg = _refused(small, tmp_path / "out", "<size>", case="malformed XML value")
    assert "sixty" in msg and str(small.xml) in msg
    assert not (tmp_path / "out").exists()


def test_xml_pointing_at_missing_tile(rel_harness, small, tmp_path):
    tile = sorted(glob.glob(str(small.root / "images.ome.zarr" / "*")))[0]
    shutil.rmtree(tile)
    _refused(small, tmp_path / "out", os.path.basename(tile), case="missing tile")
    assert not (tmp_path / "out").exists()


def test_corrupt_zarr_chunk(rel_harness, small, tmp_path):
    chunk = sorted(glob.glob(str(small.root / "images.ome.zarr" / "*" / "0" / "0" / "0" / "0")))[0]
    with open(chunk, "wb") as f:
        f.write(b"not a blosc frame " * 8)
    tile = os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(chunk)))))
    msg = _refused(small, tmp_path / "out", tile, case="corrupt zarr chunk")
    assert "corrupt" in msg


@pytest.mark.parametrize("dtype", ["complex64", "float16"])
def test_unsupported_pixel_type(rel_harness, small, tmp_path, dtype):
    tile = sorted(glob.glob(str(small.root / "images.ome.zarr" / "*")))[0]
    group = zarr.open_group(tile, mode="r+")
    level = group["0"]
    group.create_array("0", data=level[...].astype(dtype), chunks=level.chunks, overwrite=True)
    msg = _refused(small, tmp_path / "out", dtype, case=f"{dtype} tile")
    assert "not supported" in msg and str(small.xml) in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, name", [("detection.sigma=-1", "detection.sigma"),
                                           ("fusion.blending_range=[-5,40,40]", "fusion.blending_range"),
                                           ("detection.sigmaa=2", "sigmaa")])
def test_parameter_out_of_range_or_unknown(rel_harness, small, tmp_path, setting, name):
    _refused(small, tmp_path / "out", name, "--set", setting, case=f"parameter {setting}")
    assert not (tmp_path / "out").exists()


def test_output_path_already_holds_data(rel_harness, small, tmp_path):
    out = tmp_path / "out"
    (out / "fused.ome.zarr").mkdir(parents=True)
    (out / "fused.ome.zarr" / "precious.txt").write_text("someone else's data")
    _refused(small, out, str(out), case="output path holds data")
    assert (out / "fused.ome.zarr" / "precious.txt").read_text() == "someone else's data"
    assert sorted(os.listdir(out / "fused.ome.zarr")) == ["precious.txt"], "the existing output was changed"


def test_output_path_refused_before_anything_written(rel_harness, small, tmp_path):
    out = tmp_path / "out"
    (out / "fused.ome.zarr").mkdir(parents=True)
    (out / "fused.ome.zarr" / "precious.txt").write_text("someone else's data")
    rc, _, _ = _stitch_cli(small.xml, out)
    assert rc == 2
    assert sorted(os.listdir(out)) == ["fused.ome.zarr"], f"refused run wrote {sorted(os.listdir(out))}"


# --------------------------------------------------------------------------- graceful results


def _graceful(paths, out, case: str) -> dict:
    before = folder_hash(paths.root)
    rc, stdout, err = _stitch_cli(paths.xml, out)
    # A completed run exits 0, or 3 when its QC verdict is "fail" (the summary is printed either way).
    assert rc in (0, 3), f"{case}: expected a completed run, got rc={rc}: {err[-1500:]}"
    assert folder_hash(paths.root) == before, f"{case}: the input folder was modified"
    lines = stdout.splitlines()
    full = json.loads("\n".join(lines[lines.index("{"):]))  # the command's JSON summary
    assert os.path.exists(full["aligned_xml"]) and os.path.exists(full["fused"])
    assert (rc == 3) == (full["qc"]["verdict"] == "fail"), f"{case}: rc {rc} with QC verdict {full['qc']['verdict']}"
    return {"aligned_xml": full["aligned_xml"], "fused": full["fused"], "qc_verdict": full["qc"]["verdict"],
            "qc_reasons": full["qc"]["reasons"], "detection": full["alignment"]["detection"],
            "pairs_matched": [f"{r['pairs_matched']}/{r['pairs']}" for r in full["alignment"]["rounds"]]}


def _blank_tile(paths, fill: str) -> tuple[int, int]:
    """Fill tile of setup 0 (every level) with zeros or NaN (NaN makes every tile float32)."""
    tiles = sorted(glob.glob(str(paths.root / "images.ome.zarr" / "*")))
    for i, tile in enumerate(tiles):
        group = zarr.open_group(tile, mode="r+")
        for name in [k for k in group.array_keys()]:
            a = group[name]
            data = a[...]
            if fill == "nan":
                data = data.astype(np.float32)
                if i == 0:
                    data[...] = np.nan
                group.create_array(name, data=data, chunks=a.chunks, overwrite=True)
            elif i == 0:
                a[...] = 0
    assert tiles[0].endswith("tile_x_0000_y_0000_z_0000.zarr")
    return (0, 0)


@pytest.mark.parametrize("fill", ["zero", "nan"])
def test_blank_tile_keeps_metadata_position(rel_harness, write_dataset_copy, tmp_path, fill):
    paths = write_dataset_copy(f"blank-{fill}")  # the 2x2 end-to-end dataset
    view = _blank_tile(paths, fill)
    result = _graceful(paths, tmp_path / "out", f"{fill} tile")
    solved, nominal = registrations(result["aligned_xml"]), registrations(str(paths.xml))
    # The blank tile keeps its input registration exactly (no points, no links: not moved).
    np.testing.assert_array_equal(solved[view], nominal[view])
    # ... is flagged by QC, and the three others are still matched (>= 2 pairs link them).
    assert result["qc_verdict"] in ("warn", "fail")
    assert result["detection"]["0/0"] == 0, result["detection"]
    assert any("t0 s0" in r["message"] for r in result["qc_reasons"]), result["qc_reasons"]
    assert int(result["pairs_matched"][-1].split("/")[0]) >= 2, result["pairs_matched"]
    _record(f"{fill} tile", f"completed; tile kept its metadata position, QC {result['qc_verdict']}, "
                            f"pairs matched {result['pairs_matched'][-1]}")


def test_single_tile(rel_harness, write_dataset_copy, tmp_path):
    paths = write_dataset_copy("single", **{**SMALL, "grid": (1, 1, 1)})
    result = _graceful(paths, tmp_path / "out", "single tile")
    assert all(r.startswith("0/") for r in result["pairs_matched"]), result["pairs_matched"]
    solved, nominal = registrations(result["aligned_xml"]), registrations(str(paths.xml))
    np.testing.assert_array_equal(solved[(0, 0)], nominal[(0, 0)])
    from rhapso_core.io import open_image

    fused = open_image(result["fused"])
    assert tuple(fused.level_shape(0)) == (16, 64, 64)  # the tile itself (z, y, x)
    _record("single tile", f"completed; nothing to match, registration unchanged, QC {result['qc_verdict']}")


def test_tiles_that_do_not_overlap(rel_harness, write_dataset_copy, tmp_path):
    from rhapso_core import transforms
    from rhapso_core.spimdata import load_xml, save_xml

    paths = write_dataset_copy("apart", **SMALL)
    sd = load_xml(paths.xml)
    save_xml(sd.with_prepended_transform((0, 1), "moved apart", transforms.translation((400.0, 0.0, 0.0))),
             paths.xml)
    result = _graceful(paths, tmp_path / "out", "tiles that do not overlap")
    assert all(r.startswith("0/") for r in result["pairs_matched"]), result["pairs_matched"]
    solved, nominal = registrations(result["aligned_xml"]), registrations(str(paths.xml))
    for v in nominal:
        np.testing.assert_array_equal(solved[v], nominal[v])
    _record("tiles that do not overlap", f"completed; 0 pairs, registrations unchanged, QC {result['qc_verdict']}")


def test_fused_output_checked_before_any_stage(reference_run, tmp_path):
    """The core check a flow can run first: foreign data refused, an earlier fusion output resumable."""
    from rhapso_core.io import ImageIOError
    from rhapso_core.pipeline.fuse import check_output_free

    foreign = tmp_path / "fused.ome.zarr"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("x")
    with pytest.raises(ImageIOError, match="not a fusion output"):
        check_output_free(str(foreign))
    check_output_free(str(foreign), overwrite=True)  # the caller asked to replace it
    check_output_free(str(tmp_path / "absent.ome.zarr"))
    check_output_free(reference_run["result"]["fused"])  # a fusion output: may be resumed
    assert (foreign / "precious.txt").read_text() == "x"
