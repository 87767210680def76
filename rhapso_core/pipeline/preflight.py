"""Checks run before a stage writes anything: the XML parses and every view's pixels open."""

from __future__ import annotations

from rhapso_core.pipeline.dataset import DatasetError, load_dataset, open_view, view_geometry
from rhapso_core.spimdata import SpimData


def check_dataset(xml_uri: str, storage_options=None, open_images: bool = True) -> SpimData:
    """Load the XML and open (metadata only) every view's image; raise one-line errors."""
    sd = load_dataset(xml_uri, storage_options)
    if not sd.views():
        raise DatasetError(f"{xml_uri}: the dataset has no views")
    view_geometry(sd)
    if open_images:
        for v in sd.views():
            try:
                src = open_view(sd, v, storage_options)
            except DatasetError:
                raise
            except Exception as exc:
                raise DatasetError(f"{xml_uri}: view (timepoint {v[0]}, setup {v[1]}): {exc}") from None
            size = sd.setup_of(v).size
            if size is not None and tuple(src.level_shape(0)) != tuple(size[::-1]):
                raise DatasetError(
                    f"{xml_uri}: <ViewSetup id={v[1]}> size {tuple(size)} (x y z) differs from its image "
                    f"{tuple(src.level_shape(0)[::-1])}"
                )
    return sd


def check_params_for_dataset(sd: SpimData, params) -> None:
    """Parameters that name views of the dataset must name existing ones (refused before any stage)."""
    fixed = params.solver.fixed_views
    if fixed:
        views = set(sd.views())
        for v in fixed:
            if (int(v[0]), int(v[1])) not in views:
                shown = ", ".join(f"[{t},{s}]" for t, s in sorted(views)[:6]) + (" ..." if len(views) > 6 else "")
                raise DatasetError(
                    f"solver.fixed_views: view [{v[0]},{v[1]}] (timepoint, setup) is not a view of "
                    f"{sd.source_uri} (its views: {shown})"
                )
