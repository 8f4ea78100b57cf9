"""Base pieces every typed section of the stack config shares.

Stack files use camelCase keys (``bootVolumeGb``); Python code uses snake_case.
Unknown keys are errors (RKE-style silent typos are exactly what we refuse),
models are frozen so nothing downstream mutates validated config. ``ConfigError``
and ``fail`` live here (not in ``stack``) so the whole-stack checks in other
modules (``components.preflight``, ``components.config.ranges``) can raise them
without importing the stack module.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

NAMESPACE = "multicloud"


class ConfigError(ValueError):
    """A stack config problem, already phrased for the person editing the stack file."""


def fail(path: str, message: str) -> ConfigError:
    """A ``ConfigError`` for one key: ``path`` as typed with ``--path`` (``sites.home.x``)."""
    return ConfigError(f"invalid stack config:\n  {NAMESPACE}:{path}: {message}")


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a network in CIDR notation ({err})") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]
"""A network in CIDR notation without host bits (IPv4 or IPv6)."""


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )
