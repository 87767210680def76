"""``rhapso view``: a local server that Neuroglancer can read, and a link whose state shows the
tiles in place (issue 22 item 2). The page rendered in a browser: test_view_in_chromium.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pytest

from rhapso_cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("view") / "data"
    assert main(["synth", str(out), "--grid", "2x1", "--set", "synthetic.tile_size_xyz=[64,64,16]",
                 "--set", "synthetic.n_levels=1"]) == 0
    return out


def _exists(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
        return True
    except urllib.error.HTTPError:
        return False


def _state(url: str) -> dict:
    return json.loads(unquote(url.split("#!", 1)[1]))


def test_view_of_an_xml_serves_every_tile_to_the_link(dataset):
    from rhapso_cli.view import start, stop_local_viewer

    server, url, skipped = start(str(dataset / "dataset.xml"))
    try:
        state = _state(url)
        layers = state["layers"]
        tiles = [ly for ly in layers if ly["type"] == "image"]
        assert len(tiles) == 2 and skipped == []
        for ly in tiles:  # every source is reachable over the served HTTP, with CORS for Neuroglancer's origin
            src = ly["source"]["url"] if isinstance(ly["source"], dict) else ly["source"]
            http = src.removeprefix("zarr://")
            assert http.startswith(server.url)
            name = "zarr.json" if _exists(http + "zarr.json") else ".zattrs"
            with urllib.request.urlopen(http + name, timeout=10) as r:
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                meta = json.loads(r.read())
            assert "multiscales" in json.dumps(meta)  # the OME-Zarr image Neuroglancer opens
            chunk = json.loads(urllib.request.urlopen(http + "0/.zarray", timeout=10).read()) if name == ".zattrs" \
                else None
            assert chunk is None or chunk["shape"][-1] == 64
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
        stop_local_viewer(server)


def test_view_command_prints_the_link_and_stops_on_ctrl_c(dataset):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "rhapso_cli.main", "view", str(dataset / "dataset.xml"),
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(ln.startswith("https://") for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        assert lines[0].startswith("serving http://127.0.0.1:"), lines
        assert lines[-1].startswith("https://neuroglancer-demo.appspot.com/#!")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped serving" in out and "Traceback" not in err


def test_view_of_nothing_is_one_line(tmp_path):
    assert main(["view", str(tmp_path / "missing.xml"), "--no-browser"]) == 2
