"""When may Kubernetes objects go in after the cluster is up: the ingress-nginx controller
and its admission webhook, checked from what ``kubectl get -o json`` returns (pure).

Until a controller pod is behind the webhook and its CA bundle is patched in, the API
server rejects every Ingress, ``rke up`` does not wait for it and pulumi-kubernetes does
not retry (sources: docs/network.md#ingress-sitesnameingress). Both engines are checked
on the CA bundle (RKE2 deletes its admission Jobs on success); each names its controller
(``rke/ingress.py``, ``rke2/ingress.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IngressController:
    """Where one engine's ingress-nginx lives. ``patch_job`` only names what writes the CA."""

    namespace: str
    daemonset: str
    webhook_service: str
    webhook_configuration: str
    patch_job: str


# EndpointSlices carry their Service's name in this label (discovery.k8s.io/v1;
# the EndpointSlice controller sets it, pkg/controller/endpointslice in Kubernetes).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def daemonset_pending(ds: Mapping[str, Any] | None) -> str | None:
    """Why the DaemonSet has not rolled out, or None when it has.

    kubectl's ``DaemonSetStatusViewer`` (``k8s.io/kubectl/pkg/polymorphichelpers/
    rollout_status.go``): the observed generation caught up, every desired pod updated and
    available; plus at least one desired pod (a node selector matching no node would
    leave the webhook without an endpoint for ever).
    """
    if not ds:
        return "the DaemonSet does not exist yet"
    generation = int((ds.get("metadata") or {}).get("generation") or 0)
    status = ds.get("status") or {}
    observed = int(status.get("observedGeneration") or 0)
    desired = int(status.get("desiredNumberScheduled") or 0)
    updated = int(status.get("updatedNumberScheduled") or 0)
    available = int(status.get("numberAvailable") or 0)
    if generation > observed:
        return "its spec update is not observed yet"
    if desired == 0:
        return "it selects no node (desiredNumberScheduled 0)"
    if updated < desired:
        return f"{updated} of {desired} pods updated"
    if available < desired:
        return f"{available} of {desired} pods available"
    return None


def ready_endpoints(slices: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ready addresses of a Service's EndpointSlices (``conditions.ready`` true, or
    unset: discovery.k8s.io/v1 says consumers treat unknown as ready)."""
    out: list[str] = []
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                out.extend(str(a) for a in endpoint.get("addresses") or [])
    return sorted(set(out))


def webhook_pending(config: Mapping[str, Any] | None) -> str | None:
    """Why the webhook configuration cannot be called yet, or None: it must exist and
    every webhook carry a ``clientConfig.caBundle`` (the patch Job writes it)."""
    if not config:
        return "the ValidatingWebhookConfiguration does not exist yet"
    hooks = config.get("webhooks") or []
    if not hooks or not all((h.get("clientConfig") or {}).get("caBundle") for h in hooks):
        return "its CA bundle is not patched in yet"
    return None


def pending(
    controller: IngressController,
    objects: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
) -> list[str]:
    """What still keeps an Ingress from being admitted; empty when nothing does.

    ``objects``: the items ``kubectl get daemonset/<ds> validatingwebhookconfiguration/<vwc>
    -o json --ignore-not-found`` returned (either may be missing); ``slices``: the
    EndpointSlices labelled with the webhook Service's name.
    """
    by_kind = {(o.get("kind"), (o.get("metadata") or {}).get("name")): o for o in objects}
    c = controller
    out = []
    ds = daemonset_pending(by_kind.get(("DaemonSet", c.daemonset)))
    if ds:
        out.append(f"DaemonSet {c.namespace}/{c.daemonset}: {ds}")
    if not ready_endpoints(slices):
        out.append(f"Service {c.namespace}/{c.webhook_service}: no ready endpoint")
    hook = webhook_pending(by_kind.get(("ValidatingWebhookConfiguration", c.webhook_configuration)))
    if hook:
        out.append(
            f"ValidatingWebhookConfiguration {c.webhook_configuration}: {hook} "
            f"(Job {c.namespace}/{c.patch_job})"
        )
    return out


def items(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The objects of a ``kubectl get -o json`` answer: a ``List``'s items, one object,
    or none (``--ignore-not-found`` with nothing found prints nothing)."""
    if not document:
        return []
    if document.get("kind", "").endswith("List") and "items" in document:
        return list(document.get("items") or [])
    return [document]
