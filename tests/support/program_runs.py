"""Helpers for tests that evaluate the whole program under mocks."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from scripts.offline import Registration, Run, is_secret, reveal, run_program, stack_config

VM_TYPES = ("openstack:compute/instance:Instance", "digitalocean:index/droplet:Droplet")
RKE_COMMAND = "command:local:Command"


def edited(stack: str, edit: Callable[[dict[str, Any]], None]) -> tuple[dict[str, str], list[str]]:
    """The stack's config with ``edit`` applied to the parsed structured values."""
    config, secrets = stack_config(stack)
    values = {
        k: json.loads(v) if k.endswith((":sites", ":rke", ":entrypoint", ":deployer")) else v
        for k, v in config.items()
    }
    values = copy.deepcopy(values)
    edit(values)
    return {
        k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in values.items()
    }, secrets


_RUNS: dict[str, Run] = {}


def cached_run_program(
    config: dict[str, str],
    *,
    secret_keys: list[str] | None = None,
    stack: str = "test",
    preview: bool = False,
) -> Run:
    """``run_program``, evaluated once per distinct (config, secret keys, stack, preview) in
    the session: the program is deterministic in these, so a second evaluation would give
    the same registrations. Callers treat the Run as read-only, and must not use this
    while monkeypatching the program's code (the key is the config only)."""
    key = json.dumps([sorted(config.items()), sorted(secret_keys or []), stack, preview])
    if key not in _RUNS:
        _RUNS[key] = run_program(config, secret_keys=secret_keys, stack=stack, preview=preview)
    return _RUNS[key]


def committed(stack: str, preview: bool = False) -> Run:
    """The committed stack file evaluated (once per session; ``committed("prod")`` and
    ``committed("prod", False)`` share the run)."""
    return _committed(stack, bool(preview))


@cache
def _committed(stack: str, preview: bool) -> Run:
    return _evaluated(*stack_config(stack), stack, preview)


def _evaluated(config: dict[str, str], secrets: list[str], stack: str, preview: bool) -> Run:
    run = cached_run_program(config, secret_keys=secrets, stack=stack, preview=preview)
    assert run.error is None, run.error
    return run


def run_edited(stack: str, edit: Callable[[dict[str, Any]], None], preview: bool = False) -> Run:
    config, secrets = edited(stack, edit)
    return run_program(config, secret_keys=secrets, stack=stack, preview=preview)


def by_urn(run: Run) -> dict[str, Registration]:
    return {r.urn: r for r in run.registrations}


def changed_inputs(before: Run, after: Run) -> dict[str, list[str]]:
    """URN -> names of top-level inputs whose (revealed) values differ."""
    old, new = by_urn(before), by_urn(after)
    changes = {}
    for urn in old.keys() & new.keys():
        a, b = reveal(old[urn].inputs), reveal(new[urn].inputs)
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if keys:
            changes[urn] = keys
    return changes


def vms(run: Run) -> list[Registration]:
    return [r for r in run.registrations if r.type in VM_TYPES]


# --- the RKE2 engine: the committed stacks rendered with engine rke2 ------------------

CANARIES = {
    key: f"canary-{key}-7f3a"
    for key in (
        "zerotierToken",
        "sshPrivateKey",
        "digitaloceanToken",
        "cloudflareApiToken",
        "etcdS3AccessKey",
        "etcdS3SecretKey",
    )
}


def plaintext(value: Any) -> str:
    """Every string in ``value`` (nested dicts and lists) that is not a Pulumi secret,
    joined: what a canary must never appear in."""
    if is_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(plaintext(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(plaintext(v) for v in value)
    return str(value)


def rke2_config(
    stack: str, edit: Callable[[dict[str, Any]], None] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The stack with ``engine: rke2`` (its file keeps rke) and canary secret values."""
    from scripts.render import with_engine

    config, secrets = edited(stack, edit or (lambda values: None))
    config = with_engine(config, "rke2")
    config |= {f"multicloud:{k}": v for k, v in CANARIES.items()}
    return config, sorted(set(secrets) | {f"multicloud:{k}" for k in CANARIES})


def committed_rke2(stack: str, preview: bool = False) -> Run:
    """The committed stack with engine rke2 and canary secrets, evaluated once per session."""
    return _committed_rke2(stack, bool(preview))


@cache
def _committed_rke2(stack: str, preview: bool) -> Run:
    return _evaluated(*rke2_config(stack), stack, preview)
