"""The dataset to align, read through a flat field estimated from its tiles (``alignment.flatfield``).

The objective's fall-off pulls detected points toward each tile's centre and biases phase
correlation (``docs/accuracy.md``, "Vignetting": 0.23-0.37 voxel RMS at a 40 % fall-off, 0.005
once corrected). Where the XML records no flat field, one per channel is estimated from the tiles
at their stage positions by the intensity module (its content estimate refined by what overlapping
views see at the same world points, :mod:`rhapso_core.intensity.flatfield_overlap`), above the
camera offset ``intensity.dark_level``, which must be given: tiles whose darkest voxels are
vignetted background cannot tell an offset from the fall-off (measured: 125-128 estimated for a
true 100, a third too much fall-off).

The estimate is written as BigStitcher writes recorded flat fields: a bright and a dark TIFF per
channel and tile size, and a copy of the XML whose loader wraps the original in a
``spimreconstruction.wrapped.flatfield.multiresolution`` loader naming them (absolute paths), in a
folder beside the solved XML (``<stem>.flatfield``: an output the solved XML depends on, not
scratch). Every stage then reads corrected pixels through it
(:mod:`rhapso_core.io.flatfield_source`), and the solved XML keeps the loader, so fusion and
BigStitcher read the same pixels.
"""

from __future__ import annotations

import hashlib

from rhapso_core.intensity.params import IntensityParams
from rhapso_core.io import fs_for
from rhapso_core.output_layout import join
from rhapso_core.spimdata import FlatFieldFiles, FlatFieldImageLoader, load_xml, save_xml

__all__ = ["FlatFieldInputError", "flatfield_input", "INPUT_NAME"]

#: The wrapped copy of the input XML, in the flat-field folder.
INPUT_NAME = "flatfield_input.xml"
# Bright images are ``dark + SCALE * F``: the correction divides by ``bright - dark`` and
# multiplies by its mean, so the scale cancels; float32 keeps F's 7 digits.
_SCALE = 1000.0


class FlatFieldInputError(ValueError):
    """The flat field cannot be estimated as asked (one line, naming the parameter)."""


def flatfield_input(xml_uri: str, params: IntensityParams, folder: str, storage_options: dict | None = None) -> str:
    """The XML to align: ``xml_uri`` itself when its loader already corrects by recorded flat
    fields, else a copy in ``folder`` read through flat fields estimated per channel.

    Raises
    ------
    FlatFieldInputError
        ``params.dark_level`` is not set.
    """
    import numpy as np

    from rhapso_core.intensity.dataset import sampled_views
    from rhapso_core.intensity.flatfield import content_flatfield
    from rhapso_core.intensity.flatfield_overlap import refine_flatfield
    from rhapso_core.intensity.model import normalised_position
    from rhapso_core.intensity.sampling import sample_pairs

    sd = load_xml(xml_uri, storage_options)
    if isinstance(sd.image_loader, FlatFieldImageLoader):
        return xml_uri  # the lab's recorded flat fields win over an estimate
    if params.dark_level is None:
        raise FlatFieldInputError(
            "alignment.flatfield=estimate needs intensity.dark_level: the camera's offset in counts "
            "(its documented value, often 100), under the signal that the fall-off scales")
    dark = float(params.dark_level)
    views = list(sd.views())
    sv = sampled_views(sd, views, storage_options)
    samples = sample_pairs(sv, params.samples_per_pair, params.max_voxels, params.min_samples)
    fs, root = fs_for(folder, storage_options)
    fs.makedirs(root, exist_ok=True)
    files: list[FlatFieldFiles] = []
    written: dict[tuple, tuple[str, str]] = {}
    for ch in sorted({v.channel for v in sv}):
        of_channel = [v for v in sv if v.channel == ch]
        ff = refine_flatfield(of_channel, samples, content_flatfield(of_channel, params.flatfield_degree, dark),
                              params.outlier_mad)
        for v in of_channel:
            nx, ny = int(v.size_xyz[0]), int(v.size_xyz[1])
            key = (ch, nx, ny)
            if key not in written:
                u = normalised_position(np.arange(nx), nx)
                w = normalised_position(np.arange(ny), ny)
                bright = (dark + _SCALE * ff.evaluate(u[None, :], w[:, None])).astype(np.float32)
                # Named by their content: another estimate (another offset, other tiles) gives other
                # names, so the wrapped XML differs and no task result cached by it is reused.
                digest = hashlib.sha256(repr((ff.to_dict(), nx, ny)).encode()).hexdigest()[:12]
                names = (join(folder, f"flatfield_ch{ch}_{nx}x{ny}_{digest}_bright.tif"),
                         join(folder, f"flatfield_ch{ch}_{nx}x{ny}_{digest}_dark.tif"))
                for name, img in zip(names, (bright, np.full((ny, nx), dark, np.float32))):
                    _write_tiff(name, img, storage_options)
                written[key] = names
            b, d = written[key]
            files.append(FlatFieldFiles(int(v.view_id[0]), int(v.view_id[1]), bright=b, bright_type="absolute",
                                        dark=d, dark_type="absolute"))
    wrapped = sd.replace(image_loader=FlatFieldImageLoader(inner=sd.image_loader, flatfields=tuple(files)))
    out = join(folder, INPUT_NAME)
    save_xml(wrapped, out, storage_options=storage_options)
    # An earlier estimate's images, which no XML of this run names any more.
    keep = {fs_for(n, storage_options)[1] for pair in written.values() for n in pair}
    for old in fs.glob(f"{root.rstrip('/')}/flatfield_ch*.tif"):
        if old not in keep:
            fs.rm(old)
    return out


def _write_tiff(uri: str, img, storage_options: dict | None) -> None:
    """Whole or not at all: written beside, then moved into place (the temporary named as zarr
    names its own, so a run that takes over a killed run's lock sweeps it:
    :mod:`rhapso_core.pipeline.interrupted_writes`)."""
    import io
    import uuid

    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, img)
    fs, path = fs_for(uri, storage_options)
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    with fs.open(tmp, "wb") as f:
        f.write(buf.getvalue())
    fs.mv(tmp, path)
