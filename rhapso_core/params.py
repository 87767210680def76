"""Base class for stage parameters.

Every stage's parameters are a pydantic model deriving from :class:`StageParams`:
names follow the seed's parameter tables, every field documents its unit and
default, unknown names are refused (a typo in a parameter file must not be
silently ignored), and out-of-range values fail validation with the field's name.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
