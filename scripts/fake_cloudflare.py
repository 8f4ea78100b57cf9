"""Models of the Cloudflare side, written from the source of what pulumi-cloudflare 6.x bridges.

Used by the offline harness (scripts/offline.py) as the stand-in cloud, and by the tests:

- ``created_state`` / ``refreshed_state``: what terraform-provider-cloudflare v5 stores for the
  inputs of ``cloudflare_api_token`` and ``cloudflare_dns_record`` after a create, and after a
  refresh reads them back. ``input_diff`` compares new inputs with a stored state the way the
  engine's plan does for the attributes a program sets, so a second run that changes nothing
  must come out empty.
- ``query_string``: how cloudflare-go builds the query of a list call such as the
  ``api_token_permission_groups_list`` data source's.

Assumptions the provider's code cannot settle are marked "API:" below: the Cloudflare API is not
reachable here, so these model its documented answers, not observed ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

API_TOKEN = "cloudflare:index/apiToken:ApiToken"
DNS_RECORD = "cloudflare:index/dnsRecord:DnsRecord"
PLACEHOLDER_TOKEN = "placeholder-secret"  # the token value the fake API hands out

# --- cloudflare-go: list-call query strings ---------------------------------------------------


def _query_escape(value: str) -> str:
    """Go's ``url.QueryEscape``: ``escape(s, encodeQueryComponent)`` in net/url/url.go keeps
    ASCII letters, digits and ``-_.~``, turns a space into ``+`` and writes every other byte
    as ``%XX`` with upper-case hex (``shouldEscape`` escapes ``$&+,/:;=?@`` in this mode)."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in "-_.~"):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def query_string(params: Mapping[str, str | None]) -> str:
    """The query cloudflare-go sends for list parameters given as plain strings.

    The provider sets a ``param.Field`` only for attributes that are not null
    (``toListParams`` in internal/services/api_token_permission_groups/list_data_source_model.go).
    ``URLQuery`` (user/tokenpermissiongroup.go) marshals them with ``apiquery``, whose string
    encoder returns the value unchanged (internal/apiquery/encoder.go ``newPrimitiveTypeEncoder``)
    into ``url.Values``; ``requestconfig.NewRequestConfig`` then appends
    ``"?" + URLQuery().Encode()``, and ``url.Values.Encode`` sorts by key and query-escapes key
    and value. So a value is percent-encoded exactly once, by the library.
    """
    pairs = sorted((k, v) for k, v in params.items() if v is not None)
    return "&".join(f"{_query_escape(k)}={_query_escape(v)}" for k, v in pairs)


# --- terraform-provider-cloudflare v5: stored state --------------------------------------------


def _api_json(raw: str) -> str:
    """API: the JSON the API answers for a JSON value it was sent, compact (no spaces)."""
    return json.dumps(json.loads(raw), separators=(",", ":"))


def _fingerprint(policy: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """custom.go ``policyFingerprint``: effect, resources and the sorted permission group ids."""
    ids = tuple(sorted(g["id"] for g in policy["permissionGroups"]))
    return (policy["effect"], policy["resources"], ids)


def _reorder(policies: list[dict[str, Any]], prior: list[dict[str, Any]] | None) -> None:
    """custom.go ``reorderPoliciesFromSnapshot``: policies (and their groups) that match a
    prior policy by fingerprint keep the prior order; the rest sort canonically (groups by id,
    policies by effect, then resources) after them."""
    if not prior:
        for p in policies:
            p["permissionGroups"].sort(key=lambda g: g["id"])
        policies.sort(key=lambda p: (p["effect"], p["resources"]))
        return
    position = {_fingerprint(p): i for i, p in enumerate(prior)}
    group_order = {_fingerprint(p): [g["id"] for g in p["permissionGroups"]] for p in prior}

    def policy_key(p: dict[str, Any]) -> tuple[int, int, str, str]:
        fp = _fingerprint(p)
        if fp in position:
            return (0, position[fp], "", "")
        return (1, 0, p["effect"], p["resources"])

    for p in policies:
        order = group_order.get(_fingerprint(p))
        rank = {gid: i for i, gid in enumerate(order or [])}
        p["permissionGroups"].sort(
            key=lambda g: (g["id"] not in rank, rank.get(g["id"], 0), g["id"])
        )
    policies.sort(key=policy_key)


def _api_policies(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API: the policies a token has, as the API lists them: effect in lower case, resources
    compact, permission groups in an order of its own (modelled as reversed, so the
    provider's reordering has to restore what was sent)."""
    return [
        {
            "effect": p["effect"].lower(),
            "permissionGroups": [{"id": g["id"]} for g in reversed(p["permissionGroups"])],
            "resources": _api_json(p["resources"]),
        }
        for p in sent
    ]


def _api_token_after_create(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """resource.go ``Create``: the planned model, then ``UnmarshalComputedCustom``, which keeps
    the planned effect and groups (required attributes) and copies each policy's resources
    from the API policy with the same identity (effect + sorted group ids), then reorders
    against the plan."""
    planned = [
        {
            "effect": p["effect"],
            "permissionGroups": [{"id": g["id"]} for g in p["permissionGroups"]],
            "resources": p["resources"],
        }
        for p in inputs["policies"]
    ]
    api = _api_policies(planned)

    def identity(p: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
        return (p["effect"], tuple(sorted(g["id"] for g in p["permissionGroups"])))

    available: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, p in enumerate(api):
        available.setdefault(identity(p), []).append(i)
    stored = []
    for i, p in enumerate(planned):
        idxs = available.get(identity(p))
        match = idxs.pop(0) if idxs else (i if i < len(api) else None)
        resources = api[match]["resources"] if match is not None else p["resources"]
        stored.append(
            {**p, "permissionGroups": list(p["permissionGroups"]), "resources": resources}
        )
    _reorder(stored, planned)
    return {
        **inputs,
        "policies": stored,
        "status": "active",
        "value": PLACEHOLDER_TOKEN,
    }


def _api_token_after_read(state: Mapping[str, Any]) -> dict[str, Any]:
    """resource.go ``Read``: ``UnmarshalCustom`` takes everything from the API, then reorders
    against the prior state; the token value is kept from the state."""
    prior = [dict(p) for p in state["policies"]]
    policies = _api_policies(prior)
    _reorder(policies, prior)
    return {**state, "policies": policies}


def _dns_record_after_create(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """resource.go ``Create`` refuses ``proxied`` with a ttl other than 1, then stores the plan
    with the computed attributes from the answer (``apijson.UnmarshalComputed``)."""
    if inputs.get("proxied") and inputs.get("ttl") != 1:
        raise ValueError("ttl must be set to 1 when `proxied` is true")
    state = dict(inputs)
    state.setdefault("proxied", False)  # schema default (booldefault.StaticBool(false))
    state.setdefault("tags", [])
    state["proxiable"] = True
    return state


def _dns_record_after_read(state: Mapping[str, Any]) -> dict[str, Any]:
    """API: a record reads back as written; ``name`` is the FQDN, which is what the program
    sends (a relative name would come back as an FQDN, for the provider's ``ModifyPlan`` to
    reconcile from private state: not modelled, the program never sends one)."""
    return dict(state)


def created_state(type_: str, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The provider's state after creating a resource of ``type_`` from ``inputs`` (Pulumi
    property names), or None for a type this module does not model."""
    if type_ == API_TOKEN:
        return _api_token_after_create(inputs)
    if type_ == DNS_RECORD:
        return _dns_record_after_create(inputs)
    return None


def refreshed_state(type_: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The state after ``pulumi refresh`` reads the resource back from the API."""
    if type_ == API_TOKEN:
        return _api_token_after_read(state)
    if type_ == DNS_RECORD:
        return _dns_record_after_read(state)
    raise ValueError(f"no model for {type_}")


def input_diff(
    inputs: Mapping[str, Any], state: Mapping[str, Any], ignore_changes: list[str]
) -> list[str]:
    """Top-level inputs whose value differs from the stored state (both already revealed).

    The bridge plans a Plugin Framework resource by taking the configured value of every
    attribute the program sets and comparing the plan with the prior state; list attributes
    compare in order, strings byte for byte. Attributes the program leaves unset keep their
    state, so only the inputs are compared.
    """
    return sorted(k for k in inputs if k not in ignore_changes and inputs[k] != state.get(k))
