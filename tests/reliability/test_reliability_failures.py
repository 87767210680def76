"""Every failure ends in one line naming the file, element or parameter, exit 2; the traceback only under -v.

Cases 7 and 8 of issue 19. The command runs in this process without ``-v``; stderr
must be exactly one line (before: 130-210 lines of traceback for a corrupt chunk, a
wrong dtype or a bad ``solver.fixed_views``; a raw ``OSError`` traceback with exit 1
for a full disk or a too-long name). The input folder is hashed before and after.
"""

from __future__ import annotations

import errno
import glob
import json
import os

import pytest
from reliability_cli import refused, run_cli
from reliability_helpers import FIGURES

SMALL = dict(grid=(2, 1, 1), tile_size_xyz=(64, 64, 16), overlap=0.25, n_levels=1, chunk_size_xyz=(32, 32, 16))
_LINES: dict[str, str] = {}


def _record(case: str, line: str) -> None:
    _LINES[case] = line
    FIGURES["failures ending in one line"] = f"{len(_LINES)} ({', '.join(_LINES)})"


@pytest.fixture
def small(write_dataset_copy, request):
    return write_dataset_copy("fail-" + request.node.name.replace("[", "-").rstrip("]"), **SMALL)


def _tile_zarr_json(paths) -> str:
    return sorted(glob.glob(str(paths.root / "images.ome.zarr" / "*" / "0" / ".zarray")))[0]


def test_corrupt_chunk_during_a_run(rel_harness, small, tmp_path):
    chunk = sorted(glob.glob(str(small.root / "images.ome.zarr" / "*" / "0" / "0" / "0" / "0")))[0]
    with open(chunk, "wb") as f:
        f.write(b"not a blosc frame " * 8)
    line = refused(small.root, "stitch", small.xml, "--out", tmp_path / "out", "--no-ray", "--num-cpus", "2",
                   must_name="tile_x_0000")
    assert "corrupt" in line
    _record("corrupt chunk", line)


def test_wrong_dtype_in_the_metadata(rel_harness, small, tmp_path):
    meta = _tile_zarr_json(small)
    doc = json.load(open(meta))
    doc["dtype"] = "<u4"  # the chunks hold uint16
    json.dump(doc, open(meta, "w"))
    line = refused(small.root, "stitch", small.xml, "--out", tmp_path / "out", "--no-ray", "--num-cpus", "2",
                   must_name="tile_x_0000")
    assert "data type uint32" in line and "corrupt chunk?" not in line
    _record("wrong dtype", line)


def test_bad_fixed_views_refused_before_the_run(small, tmp_path):
    out = tmp_path / "out"
    line = refused(small.root, "stitch", small.xml, "--out", out, "--no-ray",
                   "--set", "solver.fixed_views=[[0,7]]", must_name="solver.fixed_views")
    assert "[0,7]" in line
    assert not out.exists(), "a refused run wrote output"
    _record("bad solver.fixed_views", line)


def test_num_cpus_zero_refused(small, tmp_path):
    line = refused(small.root, "align", small.xml, "--out", tmp_path / "a.xml", "--num-cpus", "0",
                   must_name="num_cpus")
    _record("--num-cpus 0", line)


def test_name_too_long(small, tmp_path):
    out = tmp_path / ("x" * 300 + ".xml")
    line = refused(small.root, "xml", small.xml, "--out", out, must_name="x" * 50)
    assert "too long" in line
    _record("name too long", line)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_permission_denied(small, tmp_path, monkeypatch, code):
    """Injected (as root a read-only folder is still writable; a tmpfs needs mount rights):
    the XML writer's rename fails with the OS error, naming the file."""
    real_replace = os.replace
    target = str(tmp_path / "out.xml")

    def failing_replace(src, dst, *a, **k):
        if str(dst) == target:
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", failing_replace)
    line = refused(small.root, "xml", small.xml, "--out", target, must_name=target)
    assert ("no space" in line) if code == errno.ENOSPC else ("permission denied" in line)
    _record(errno.errorcode[code], line)


def test_verbose_shows_the_traceback(small, tmp_path):
    rc, _, err = run_cli("-v", "xml", small.xml, "--out", tmp_path / ("y" * 300 + ".xml"))
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("rhapso xml: error:")


@pytest.mark.parametrize("case", ["singular affine", "negative voxel size", "infinite affine", "entity"])
def test_xml_loader_rejects_at_load_time(small, tmp_path, case):
    text = small.xml.read_text()
    if case == "singular affine":
        start = text.index("<affine>")
        end = text.index("</affine>", start)
        text = text[:start] + "<affine>1 0 0 0 2 0 0 0 4 0 0 0</affine>" + text[end + len("</affine>"):]
        must, also = "<ViewRegistration timepoint=0 setup=0>", "singular"
    elif case == "infinite affine":
        start = text.index("<affine>")
        text = text[:start] + "<affine>inf " + text[start + len("<affine>"):].split(" ", 1)[1]
        must, also = "<ViewRegistration timepoint=0 setup=0>", "non-finite"
    elif case == "negative voxel size":
        text = text.replace("<size>0.5 0.5 2.0</size>", "<size>-0.5 0.5 2.0</size>", 1)
        must, also = "<ViewSetup id=0>", "'-0.5 0.5 2.0'"
    else:
        text = text.replace('<SpimData version="0.2">', '<!DOCTYPE SpimData [<!ENTITY nm "tile">]>\n'
                            '<SpimData version="0.2">', 1)
        text = text.replace("<name>tile_x_0000_y_0000_z_0000</name>", "<name>&nm;</name>", 1)
        must, also = "<name>", "entity &nm;"
    small.xml.write_text(text)
    line = refused(small.root, "stitch", small.xml, "--out", tmp_path / "out", "--no-ray", must_name=must)
    assert also in line and "(line " in line and str(small.xml) in line, line
    assert not (tmp_path / "out").exists()
    _record(case, line)
