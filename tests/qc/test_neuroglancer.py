"""Neuroglancer state and link, and the CORS-enabled local server."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import unquote

import numpy as np
import pytest

from rhapso_core import transforms
from rhapso_core.qc.neuroglancer import (
    NeuroglancerError,
    neuroglancer_state,
    neuroglancer_url,
    serve_for_neuroglancer,
    source_url,
)
from rhapso_core.spimdata import load_xml


def test_source_urls(tmp_path):
    assert source_url("s3://bucket/run/fused.ome.zarr") == "zarr://s3://bucket/run/fused.ome.zarr/"
    assert source_url("https://host/x.zarr/") == "zarr://https://host/x.zarr/"
    (tmp_path / "a b").mkdir()
    assert (source_url(str(tmp_path / "a b" / "f.zarr"), "http://127.0.0.1:9000/", str(tmp_path))
            == "zarr://http://127.0.0.1:9000/a%20b/f.zarr/")
    with pytest.raises(NeuroglancerError, match="not inside the served folder"):
        source_url("/elsewhere/f.zarr", "http://127.0.0.1:9000", str(tmp_path))
    with pytest.raises(NeuroglancerError, match="base_url"):
        source_url(str(tmp_path / "f.zarr"))


def _apply_layer(layer, zyx):
    m = np.asarray(layer["source"]["transform"]["matrix"], dtype=np.float64)
    return m[:, :-1] @ np.asarray(zyx, dtype=np.float64) + m[:, -1]


def test_state_places_tiles_by_their_registrations(qc_run):
    state = neuroglancer_state(qc_run.solved_xml, qc_run.fused, base_url="http://127.0.0.1:9000/",
                               serve_root=str(qc_run.root))
    sd = load_xml(qc_run.solved_xml)
    names = [lay["name"] for lay in state["layers"]]
    assert names[0] == "fused" and len(names) == 1 + len(sd.views()) and state["_skipped"] == []
    # World unit of the synthetic XML: the finest voxel, 0.5 um.
    assert state["dimensions"] == {ax: [pytest.approx(5e-7), "m"] for ax in "xyz"}
    rng = np.random.default_rng(0)
    for layer, v in zip(state["layers"][1:], sd.views()):
        assert layer["source"]["url"].startswith("zarr://http://127.0.0.1:9000/data/images.ome.zarr/tile_")
        assert layer["source"]["transform"]["outputDimensions"] == state["dimensions"]
        for xyz in rng.uniform(0, 100, (3, 3)):
            # Neuroglancer's OME-Zarr source dimensions are z y x, voxel centres on integers.
            want = transforms.apply(sd.view_to_world(v), xyz[None])[0]
            assert _apply_layer(layer, xyz[::-1]) == pytest.approx(want, abs=1e-9)
    # The fused image: voxel index -> world through its recorded grid (origin + voxel size * index).
    import zarr

    grid = zarr.open_group(qc_run.fused, mode="r").attrs["rhapso_fusion_grid"]
    fused = state["layers"][0]
    idx = np.array([3.0, 5.0, 7.0])
    # Source dimensions t, c, z, y, x; output x, y, z then t and c' passed through.
    out = _apply_layer(fused, np.concatenate([[0.0, 0.0], idx[::-1]]))
    assert out[:3] == pytest.approx(np.array(grid["origin_xyz"]) + np.array(grid["voxel_size_xyz"]) * idx)
    assert out[3:].tolist() == [0.0, 0.0]
    url = neuroglancer_url(state)
    prefix = "https://neuroglancer-demo.appspot.com/#!"
    assert url.startswith(prefix)
    back = json.loads(unquote(url[len(prefix):]))
    assert back["layers"] == json.loads(json.dumps(state["layers"])) and "_skipped" not in back


def test_state_for_s3_data(qc_run, tmp_path):
    # Same dataset described as if it lived on S3: sources become zarr://s3://..., no server needed.
    sd = load_xml(qc_run.solved_xml)
    from rhapso_core.spimdata import save_xml

    moved = sd.replace(base_path_text="s3://bucket/run/data", base_path_type="absolute")
    xml = tmp_path / "s3.xml"
    save_xml(moved, str(xml))
    import zarr

    grid = zarr.open_group(qc_run.fused, mode="r").attrs["rhapso_fusion_grid"]
    # The grid record is passed in so the test never reaches for a real bucket.
    state = neuroglancer_state(str(xml), "s3://bucket/run/out/fused.ome.zarr", fused_grid=grid)
    assert state["layers"][0]["source"]["url"] == "zarr://s3://bucket/run/out/fused.ome.zarr/"
    assert state["layers"][0]["source"]["transform"]["matrix"][0][4] == pytest.approx(grid["voxel_size_xyz"][0])  # column x of t, c, z, y, x
    assert all(lay["source"]["url"].startswith("zarr://s3://bucket/run/data/images.ome.zarr/tile_")
               for lay in state["layers"][1:])


def test_serve_for_neuroglancer_sends_cors_headers(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / ".zattrs").write_text('{"a": 1}')
    server = serve_for_neuroglancer(tmp_path, port=0)
    try:
        with urllib.request.urlopen(server.url + "x.zarr/.zattrs", timeout=10) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert json.loads(r.read()) == {"a": 1}
        req = urllib.request.Request(server.url + "x.zarr/.zattrs", method="OPTIONS")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        server.shutdown()
        server.server_close()
