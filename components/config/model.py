"""Base class for every typed section of the stack config.

Stack files use camelCase keys (``bootVolumeGb``); Python code uses snake_case.
Unknown keys are errors (RKE-style silent typos are exactly what we refuse),
models are frozen so nothing downstream mutates validated config.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )
