"""The parameter-resolution task: every ``auto`` parameter derived for the dataset, before detection."""

from __future__ import annotations

from prefect import task

from rhapso_core import autoparams
from rhapso_core.autoparams import Resolution
from rhapso_core.autoparams.store import write_resolution
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="resolve-parameters", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def resolve_parameters(xml: str, params, out_json: str | None = None) -> Resolution:
    """Resolve ``params`` (PipelineParams) for ``xml``; the record goes to ``out_json`` when given."""
    res = autoparams.resolve_parameters(xml, params)
    if out_json:
        write_resolution(res, out_json)
    return res
