"""Small PNG pictures for the report, drawn with Pillow (no plotting library needed).

Every function takes numbers computed from a run's outputs and returns PNG bytes;
:func:`data_uri` embeds them in HTML.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "data_uri",
    "to_png",
    "scale_to_uint8",
    "colormap",
    "mip_picture",
    "view_plane",
    "THIN_STACK_PLANES",
    "layout_picture",
    "histogram_picture",
]

# Anchors of a perceptually ordered map (dark blue -> teal -> yellow), similar in spirit to viridis.
_ANCHORS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)
_BG = (255, 255, 255)
_RED_INDEX = 64
_INK = (30, 30, 30)


#: Stacks with at most this many planes are shown as one plane, not a projection: a
#: projection of a single plane or a thin stack adds nothing, and across a thin stack
#: it overlays planes the alignment treats apart (out-of-focus haze hides seams).
THIN_STACK_PLANES = 16


def view_plane(
    volume_zyx: np.ndarray, points_z: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The 2-D picture of a (z, y, x) volume: ``(image_yx, mask of points shown, label)``.

    A single plane is itself; a thin stack (<= :data:`THIN_STACK_PLANES` planes) shows
    the plane holding most points (its middle plane without points) and only the points
    within half a plane of it; deeper stacks keep the maximum-intensity projection and
    every point. ``points_z`` are the points' z in the volume's plane coordinates.
    """
    v = np.asarray(volume_zyx)
    nz = v.shape[0]
    pz = None if points_z is None else np.asarray(points_z, dtype=np.float64).reshape(-1)
    if nz == 1:
        return v[0], None if pz is None else np.ones(pz.size, bool), "plane"
    if nz <= THIN_STACK_PLANES:
        k = nz // 2
        if pz is not None and pz.size:
            k = int(np.argmax(np.bincount(np.clip(np.rint(pz), 0, nz - 1).astype(int), minlength=nz)))
        mask = None if pz is None else np.abs(pz - k) <= 0.5
        return v[k], mask, f"plane {k} of {nz}"
    return v.max(axis=0), None if pz is None else np.ones(pz.size, bool), "max projection"


def _font():
    return ImageFont.load_default()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_png(image: Image.Image | np.ndarray) -> bytes:
    """PNG bytes of a Pillow image or an ``(H, W)`` / ``(H, W, 3)`` uint8 array."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def scale_to_uint8(img: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.7) -> np.ndarray:
    """Contrast-stretch an image between two percentiles to uint8."""
    a = np.asarray(img, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((a - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colormap(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """``(N, 3)`` uint8 colours of values on the map (NaN -> grey)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((v - vmin) / span, 0.0, 1.0) * (len(_ANCHORS) - 1)
    i = np.minimum(np.floor(np.nan_to_num(t)).astype(int), len(_ANCHORS) - 2)
    frac = (np.nan_to_num(t) - i)[:, None]
    rgb = _ANCHORS[i] * (1.0 - frac) + _ANCHORS[i + 1] * frac
    rgb[~np.isfinite(v)] = (160, 160, 160)
    return np.round(rgb).astype(np.uint8)


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    s = max_side / max(width, height, 1)
    return max(1, round(width * s)), max(1, round(height * s))


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``target`` (> 0): a scale bar's length."""
    k = 10.0 ** np.floor(np.log10(target))
    return float(max(m * k for m in (1.0, 2.0, 5.0) if m * k <= target * (1 + 1e-9)))


def mip_picture(mip_yx: np.ndarray, points_yx: np.ndarray | None, max_side: int, caption: str = "",
                pixel_size: float | None = None, unit: str = "") -> bytes:
    """A maximum-intensity projection with points drawn as red circles.

    Parameters
    ----------
    mip_yx : (H, W) array
        The projection (any dtype), rows y, columns x.
    points_yx : (K, 2) array or None
        Point positions in ``mip_yx`` pixel coordinates (pixel centres on integers).
    max_side : int
        Largest side of the picture (pixels).
    caption : str
        Text drawn in the top-left corner.
    pixel_size, unit : float, str, optional
        Length of one ``mip_yx`` pixel (x) and its unit: draws a scale bar bottom-left.
    """
    grey = scale_to_uint8(mip_yx)
    h, w = grey.shape
    W, H = _fit(w, h, max_side)
    small = np.asarray(Image.fromarray(grey).resize((W, H), Image.Resampling.BILINEAR))
    # A 64-grey palette plus red: a third of the bytes of RGB, and noise compresses better.
    img = Image.fromarray((small >> 2).astype(np.uint8), mode="P")
    palette = [int(round(i * 255 / 63)) for i in range(64) for _ in range(3)] + [255, 40, 40]
    img.putpalette(palette + [0] * (768 - len(palette)))
    draw = ImageDraw.Draw(img)
    if points_yx is not None and len(points_yx):
        sy, sx = H / h, W / w
        r = max(1.5, max_side / 120)
        for y, x in np.asarray(points_yx, dtype=np.float64):
            cx, cy = (x + 0.5) * sx, (y + 0.5) * sy
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=_RED_INDEX, width=1)
    if caption:
        draw.rectangle((0, 0, 7 * len(caption) + 4, 13), fill=0)
        draw.text((2, 1), caption, fill=63, font=_font())
    if pixel_size and pixel_size > 0:
        per_px = pixel_size * w / W  # length of one picture pixel
        length = nice_length(per_px * W / 4)
        n = int(round(length / per_px))
        label = f"{length:g} {unit}".strip()
        x0, y0 = 8, H - 10
        draw.rectangle((x0 - 4, y0 - 14, x0 + max(n, 7 * len(label)) + 4, H - 2), fill=0)
        draw.rectangle((x0, y0, x0 + n, y0 + 3), fill=63)
        draw.text((x0, y0 - 13), label, fill=63, font=_font())
    return to_png(img)


def _colourbar(draw: ImageDraw.ImageDraw, x0: int, y0: int, width: int, vmin: float, vmax: float, label: str):
    cols = colormap(np.linspace(vmin, vmax, width), vmin, vmax)
    for i, c in enumerate(cols):
        draw.line((x0 + i, y0, x0 + i, y0 + 8), fill=tuple(int(v) for v in c))
    draw.text((x0, y0 + 10), f"{vmin:.3g}", fill=_INK, font=_font())
    txt = f"{vmax:.3g} {label}"
    draw.text((x0 + width - 6 * len(txt), y0 + 10), txt, fill=_INK, font=_font())


def layout_picture(
    polygons_xy: Sequence[np.ndarray],
    labels: Sequence[str],
    values: Sequence[float],
    links: Sequence[tuple[np.ndarray, np.ndarray, float, bool]] = (),
    size: int = 360,
    value_label: str = "",
    vmax: float | None = None,
) -> bytes:
    """Tiles' outlines in world XY, filled by a value (e.g. error), with links between centres.

    Parameters
    ----------
    polygons_xy : list of (K, 2) arrays
        Each tile's outline in world x, y (a convex polygon).
    labels : list of str
        Text drawn at each tile's centre.
    values : list of float
        Colour value of each tile (NaN draws grey).
    links : list of (centre_a, centre_b, value, removed)
        Lines between tile centres (world x, y) coloured by value; removed links dashed grey.
    size : int
        Largest side of the drawing area (pixels).
    value_label : str
        Unit text of the colour bar.
    vmax : float, optional
        Upper end of the colour scale (default: the largest finite value).
    """
    vals = np.asarray(values, dtype=np.float64)
    link_vals = np.asarray([lv for _, _, lv, _ in links], dtype=np.float64)
    every = np.concatenate([vals, link_vals])
    finite = every[np.isfinite(every)]
    top = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    top = top if top > 0 else 1.0
    pts = np.vstack(polygons_xy) if polygons_xy else np.zeros((1, 2))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    ext = np.maximum(hi - lo, 1e-9)
    W, H = _fit(ext[0], ext[1], size)
    pad, bar = 10, 34
    img = Image.new("RGB", (W + 2 * pad, H + 2 * pad + bar), _BG)
    draw = ImageDraw.Draw(img, "RGBA")

    def px(p):
        p = np.asarray(p, dtype=np.float64)
        # World y grows downwards on screen, as in image viewers (y is the row axis of the data).
        return (pad + (p[..., 0] - lo[0]) / ext[0] * W, pad + (p[..., 1] - lo[1]) / ext[1] * H)

    cols = colormap(vals, 0.0, top)
    for poly, c in zip(polygons_xy, cols):
        x, y = px(poly)
        draw.polygon(list(zip(x.tolist(), y.tolist())), fill=(*[int(v) for v in c], 150), outline=(0, 0, 0, 255))
    for a, b, lv, removed in links:
        (xa, ya), (xb, yb) = px(a), px(b)
        if removed:
            n = 12
            for k in range(0, n, 2):
                t0, t1 = k / n, (k + 1) / n
                draw.line((xa + (xb - xa) * t0, ya + (yb - ya) * t0, xa + (xb - xa) * t1, ya + (yb - ya) * t1),
                          fill=(120, 120, 120, 255), width=2)
        else:
            c = colormap(np.array([lv]), 0.0, top)[0]
            draw.line((xa, ya, xb, yb), fill=(*[int(v) for v in c], 255), width=3)
    for poly, text in zip(polygons_xy, labels):
        x, y = px(np.asarray(poly).mean(axis=0))
        for i, line in enumerate(text.split("\n")):
            draw.text((float(x) - 3 * len(line), float(y) - 7 + 11 * i), line, fill=(0, 0, 0, 255), font=_font())
    _colourbar(draw, pad, H + 2 * pad + 4, W, 0.0, top, value_label)
    return to_png(img)


def histogram_picture(values: np.ndarray, bins: int = 30, size: tuple[int, int] = (360, 160),
                      xlabel: str = "", range_max: float | None = None) -> bytes:
    """A bar histogram of values with the axis range and counts written on it."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    top = float(range_max) if range_max is not None else (float(v.max()) if v.size else 1.0)
    top = top if top > 0 else 1.0
    counts, edges = np.histogram(np.clip(v, 0.0, top), bins=bins, range=(0.0, top))
    W, H = size
    left, bottom, pad = 8, 22, 8
    img = Image.new("RGB", (W, H), _BG)
    draw = ImageDraw.Draw(img)
    plot_w, plot_h = W - left - pad, H - bottom - pad - 10
    cmax = max(int(counts.max()) if counts.size else 1, 1)
    bw = plot_w / bins
    for i, c in enumerate(counts):
        h = c / cmax * plot_h
        x0 = left + i * bw
        draw.rectangle((x0 + 1, pad + 10 + plot_h - h, x0 + bw - 1, pad + 10 + plot_h), fill=(59, 82, 139))
    draw.line((left, pad + 10 + plot_h, left + plot_w, pad + 10 + plot_h), fill=_INK)
    draw.text((left, 2), f"n={v.size}  max bin={cmax}", fill=_INK, font=_font())
    draw.text((left, H - bottom + 6), f"{edges[0]:.3g}", fill=_INK, font=_font())
    txt = f"{edges[-1]:.3g} {xlabel}"
    draw.text((left + plot_w - 6 * len(txt), H - bottom + 6), txt, fill=_INK, font=_font())
    return to_png(img)
