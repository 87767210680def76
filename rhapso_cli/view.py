"""``rhapso view``: look at a result in Neuroglancer without uploading anything.

The command serves the data over HTTP on this machine's loopback (CORS open, so the
Neuroglancer page on its own origin can read it), prints a Neuroglancer link whose
state shows the tiles placed by the XML's registrations and, when there is one, the
fused image, opens it in the browser, and serves until interrupted. Given an XML it
shows the tiles in place before any fusion; given a stitch folder or a fused image it
shows the fused image with the tiles over it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import webbrowser
from dataclasses import dataclass
from pathlib import Path


class ViewError(ValueError):
    """One line for the user."""


@dataclass(frozen=True)
class ViewTarget:
    xml: str  # places the tiles
    fused: str | None


def resolve_target(target: str, fused: str | None = None) -> ViewTarget:
    """An XML, a stitch output folder (``*.aligned.xml`` and ``fused.ome.zarr``) or a fused image."""
    p = Path(target)
    if p.is_file() and p.suffix == ".xml":
        return ViewTarget(str(p.resolve()), str(Path(fused).resolve()) if fused else None)
    if not p.exists():
        raise ViewError(f"{target}: no such file or folder")
    if p.is_dir() and not (p / "zarr.json").exists() and not (p / ".zattrs").exists():
        aligned = sorted(p.glob("*.aligned.xml"))
        images = sorted(p.glob("*.ome.zarr"))
        if aligned:
            return ViewTarget(str(aligned[0].resolve()), str(images[0].resolve()) if images else fused)
        raise ViewError(f"{target}: a folder without an aligned XML (*.aligned.xml); give the XML itself")
    # a fused image: the XML that placed its tiles is the one its grid names, else the fused XML beside it
    from flows.fusion import fused_xml_path

    beside = sorted(p.parent.glob("*.aligned.xml"))
    xml = beside[0] if beside else Path(fused_xml_path(str(p)))
    if not xml.exists():
        raise ViewError(f"{target}: no XML beside the fused image to place its tiles (give the XML and --fused)")
    return ViewTarget(str(xml.resolve()), str(p.resolve()))


def _serve_root(t: ViewTarget) -> str:
    """The smallest folder holding the XML, the fused image and every tile image."""
    from rhapso_core.spimdata import load_xml

    sd = load_xml(t.xml)
    paths = [os.path.dirname(t.xml)] + ([t.fused] if t.fused else [])
    for v in sd.views():
        try:
            uri = sd.image_location(v).uri
        except Exception:  # reported by the state as a skipped view
            continue
        if "://" not in uri:
            paths.append(str(Path(uri).resolve()))
    return os.path.commonpath(paths)


def _local_viewer(state: dict, host: str):
    """Neuroglancer served from this machine by its Python package (the ``view`` extra): the
    page works without internet access and holds the state itself. None when not installed."""
    try:
        import neuroglancer
    except ImportError:
        return None
    neuroglancer.set_server_bind_address(host)
    viewer = neuroglancer.Viewer()
    viewer.set_state(neuroglancer.ViewerState({k: v for k, v in state.items() if not k.startswith("_")}))
    return viewer


def start(target: str, fused: str | None = None, port: int = 0, host: str = "127.0.0.1", local_viewer: bool = True):
    """Serve and build the link: (server, url, skipped views).

    ``url`` is the public Neuroglancer page with the state in its address (shareable; needs
    internet access). With the ``neuroglancer`` package installed, ``server.local_viewer_url``
    is also set: the same view served from this machine, offline.
    """
    from rhapso_core.qc.neuroglancer import neuroglancer_state, neuroglancer_url, serve_for_neuroglancer

    t = resolve_target(target, fused)
    root = _serve_root(t)
    server = serve_for_neuroglancer(root, port=port, host=host)
    try:
        state = neuroglancer_state(t.xml, t.fused, base_url=server.url, serve_root=root)
        skipped = state.get("_skipped", [])
        viewer = _local_viewer(state, host) if local_viewer else None
        server.local_viewer = viewer  # kept alive with the data server
        server.local_viewer_url = viewer.get_viewer_url() if viewer is not None else None
        return server, neuroglancer_url(state), skipped
    except BaseException:
        server.shutdown()
        server.server_close()
        raise


def cmd_view(args) -> int:
    server, url, skipped = start(args.target, args.fused, args.port)
    # Serve until Ctrl-C or SIGTERM, whatever the inherited dispositions (a shell starts a
    # background job with SIGINT ignored, and Python keeps an ignored SIGINT ignored); set
    # before the link is printed, the only moment a user can choose to stop.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in previous:
            signal.signal(s, signal.default_int_handler)
        print(f"serving {server.url} (this machine only) for Neuroglancer; Ctrl-C stops it")
        if skipped:
            print(f"{len(skipped)} views left out: {skipped[0]['reason']}")
        if server.local_viewer_url:
            print("Neuroglancer from this machine (works offline):")
            print(server.local_viewer_url)
            print("the same view on the public Neuroglancer page (needs internet access; the link holds the view):")
        else:
            print("Neuroglancer (public page; install the 'view' extra to view offline):")
        print(url, flush=True)
        if not args.no_browser:
            webbrowser.open(server.local_viewer_url or url)
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        print("stopped serving")
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.shutdown()
        server.server_close()
        local = server.local_viewer is not None
        stop_local_viewer(server)
    if local:
        # Neuroglancer's server (tornado) can leave threads the interpreter waits for at exit,
        # so Ctrl-C would not end the command: it ends here, everything served being stopped.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def stop_local_viewer(server, timeout_s: float = 3.0) -> None:
    """Stop Neuroglancer's own server, waiting at most ``timeout_s``."""
    if getattr(server, "local_viewer", None) is not None:
        import neuroglancer

        t = threading.Thread(target=neuroglancer.stop, daemon=True)
        t.start()
        t.join(timeout_s)
        server.local_viewer = None
