"""Parameters derived from the data: every ``auto`` resolved per dataset, with its reason.

One module per stage: :mod:`.detection` (downsampling, sigma, intensity range,
threshold), :mod:`.matching` (search radius, RANSAC error, minimum inliers, the
prealignment decision); :mod:`.survey` reads the XML, :mod:`.sample` the few pixels the
resolvers measure, :mod:`.features` the features' size; :mod:`.resolve` runs them in
order and returns a :class:`Resolution` (typed records in :mod:`.records`).
"""

from rhapso_core.autoparams.records import PrealignmentDecision, Resolution, ResolvedValue
from rhapso_core.autoparams.resolve import has_auto, resolve_parameters, resolved_for

__all__ = ["Resolution", "ResolvedValue", "PrealignmentDecision", "resolve_parameters", "resolved_for", "has_auto"]
