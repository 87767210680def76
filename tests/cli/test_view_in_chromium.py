"""``rhapso view`` looked at: Neuroglancer served from this machine, rendered by headless Chromium
(SwiftShader's WebGL, no internet access), screenshots read as pixels (issue 22, acceptance).

Chromium's ``--screenshot`` fires at the page's load event, before Neuroglancer has fetched a
chunk, so the page is driven over the DevTools protocol instead: navigate, then capture until
the tiles are drawn or 60 s have passed.

Tolerance: in the top-left (x-y) panel, >= 3 % of the pixels are image content: grey (channels
within 6/255), brighter than 30/255, and not the one flat grey Neuroglancer fills space outside
the data with (the most common such level); yellow outlines and axis lines are not grey. With the
display range the state sets: ~14 %. With Neuroglancer's default range for uint16 (0-65535) the
panel shows outlines on black: 0.2 %.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from rhapso_cli.main import main

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("view-chromium") / "data"
    assert main(["synth", str(out), "--grid", "2x1", "--set", "synthetic.tile_size_xyz=[64,64,16]",
                 "--set", "synthetic.n_levels=1"]) == 0
    return out


def _devtools(profile: str, chromium_proc, timeout: float = 60.0) -> str:
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + timeout
    while not os.path.exists(port_file):
        assert chromium_proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
        time.sleep(0.1)
    time.sleep(0.2)
    port = open(port_file).read().split()[0]
    pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10))
    return next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"]


async def _render(ws_url: str, url: str, drawn, timeout: float = 60.0) -> np.ndarray:
    import websockets
    from imageio.v3 import imread

    async with websockets.connect(ws_url, max_size=64_000_000) as ws:
        counter = 0

        async def call(method, **params):
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == counter:
                    assert "error" not in msg, msg
                    return msg["result"]

        await call("Page.enable")
        await call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.sleep(1.0)
            shot = await call("Page.captureScreenshot", format="png")
            rgb = imread(io.BytesIO(base64.b64decode(shot["data"])))[..., :3]
            if drawn(rgb) or time.monotonic() > deadline:
                return rgb


def _content(rgb: np.ndarray) -> float:
    """The fraction of the x-y panel that shows image data (see the module's tolerance)."""
    h, w, _ = rgb.shape
    panel = rgb[int(0.08 * h): h // 2, : w // 2].astype(int)
    grey = panel.mean(axis=2)
    neutral = (panel.max(axis=2) - panel.min(axis=2)) <= 6
    _, counts = np.unique(np.round(grey[neutral & (grey > 30)]).astype(int), return_counts=True)
    return float((counts.sum() - counts.max()) / grey.size) if len(counts) else 0.0


def _drawn(rgb: np.ndarray) -> bool:
    return _content(rgb) >= 0.03


def test_view_of_an_xml_renders_the_tiles_offline(dataset, chromium, tmp_path):
    import neuroglancer  # noqa: F401  (the test extra installs it: its absence is a failure)

    from rhapso_cli.view import start, stop_local_viewer

    server, url, skipped = start(str(dataset / "dataset.xml"))
    profile = str(tmp_path / "profile")
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
                             "--window-size=1200,900", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.local_viewer_url and server.local_viewer_url.startswith("http://127.0.0.1:")
        rgb = asyncio.run(_render(_devtools(profile, proc), server.local_viewer_url, _drawn))
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
        server.server_close()
        stop_local_viewer(server)
    from imageio.v3 import imwrite

    imwrite(tmp_path / "view.png", rgb)  # left in pytest's tmp folder for a person to look at
    assert skipped == []
    assert _content(rgb) >= 0.03, f"x-y panel: {_content(rgb):.2%} image content (see {tmp_path / 'view.png'})"
