"""The intensity task: estimate per-view maps (and flat fields) on the solved XML and store them."""

from __future__ import annotations

from prefect import task

from rhapso_core.intensity import IntensityParams
from rhapso_core.pipeline import intensity_correction
from rhapso_core.pipeline.intensity_correction import IntensityOutcome
from tasks.policies import RETRY_DELAYS, retry_transient


@task(name="intensity", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def correct_intensity(xml_uri: str, params: IntensityParams, selection=None,
                      out_xml: str | None = None) -> IntensityOutcome:
    # Idempotent: a retry recomputes from the same XML and replaces both outputs.
    return intensity_correction.correct_intensity(xml_uri, params, selection, out_xml)


@task(name="flatfield-input", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def flatfield_input(xml_uri: str, params: IntensityParams, folder: str) -> str:
    """The XML to align through an estimated flat field (``alignment.flatfield: estimate``).
    Idempotent: a retry estimates from the same tiles and replaces the same files."""
    from rhapso_core.pipeline.flatfield_input import flatfield_input as make

    return make(xml_uri, params, folder)
