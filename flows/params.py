"""How a flow run gets its parameters: a model, a parameter file, overrides."""

from __future__ import annotations

from pathlib import Path

from rhapso_core import param_files
from rhapso_core.config import PipelineParams
from rhapso_core.pipeline.view_selection import ViewSelection

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve(
    params: PipelineParams | dict | None = None,
    params_file: str | None = None,
    overrides: list[str] | None = None,
    views: ViewSelection | dict | None = None,
) -> PipelineParams:
    """Defaults < ``params_file`` (nested or seed-style flat YAML) < ``params`` < ``views`` < ``overrides``.

    ``views`` is the flows' view-selection parameter (BigStitcher-Spark's --channelId,
    --illuminationId, --tileId, --angleId, --timepointId): it replaces ``params.views``.

    A relative ``params_file`` is looked up from the working directory, then from
    the project root (deployment presets such as ``deployments/presets/prod.yml``).
    """
    data: dict = {}
    source = "parameters"
    if params_file:
        path = Path(params_file)
        if not path.exists() and (PROJECT_ROOT / path).exists():
            path = PROJECT_ROOT / path
        source = str(path)
        notes: list[str] = []
        data = param_files.nest(param_files.read_yaml(path), PipelineParams, source, notes)
        for note in notes:  # keys of Rhapso's files that are paths or cluster settings (flows log prints)
            print(f"{source}: {note}")
    if params is not None:
        given = params.model_dump(exclude_unset=True) if isinstance(params, PipelineParams) else dict(params)
        for key, value in given.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    if views is not None:
        data["views"] = views.model_dump(exclude_none=True) if isinstance(views, ViewSelection) else dict(views)
    data = param_files.apply_overrides(data, overrides or [])
    return param_files.build(PipelineParams, data, source)
