"""components.ingress_admission: when an Ingress can be admitted, judged from kubectl's JSON
(pure)."""

from __future__ import annotations

from typing import Any

from components import ingress_admission as ingress
from rke.ingress import RKE_INGRESS
from rke2.ingress import RKE2_INGRESS
from tests.support import fake_rke


def _ds(generation: int = 1, observed: int = 1, desired: int = 2, updated: int = 2,
        available: int = 2) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": "DaemonSet",
        "metadata": {"name": RKE_INGRESS.daemonset, "generation": generation},
        "status": {
            "observedGeneration": observed, "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated, "numberAvailable": available,
        },
    }  # fmt: skip


def test_a_daemonset_is_rolled_out_as_kubectl_rollout_status_says() -> None:
    assert ingress.daemonset_pending(_ds()) is None
    assert ingress.daemonset_pending(None) == "the DaemonSet does not exist yet"
    assert "not observed" in str(ingress.daemonset_pending(_ds(generation=3, observed=2)))
    assert ingress.daemonset_pending(_ds(updated=1)) == "1 of 2 pods updated"
    assert ingress.daemonset_pending(_ds(available=1)) == "1 of 2 pods available"
    # a selector matching no node: the webhook would never get an endpoint
    none = _ds(desired=0, updated=0, available=0)
    assert "selects no node" in str(ingress.daemonset_pending(none))


def test_only_ready_endpoints_count() -> None:
    def sl(*eps: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "EndpointSlice", "endpoints": list(eps)}

    assert ingress.ready_endpoints([]) == []
    assert ingress.ready_endpoints([sl()]) == []
    not_ready = {"addresses": ["10.42.0.5"], "conditions": {"ready": False}}
    assert ingress.ready_endpoints([sl(not_ready)]) == []
    ready = {"addresses": ["10.42.1.5"], "conditions": {"ready": True}}
    unknown = {"addresses": ["10.42.2.5"]}  # discovery.k8s.io/v1: unknown reads as ready
    assert ingress.ready_endpoints([sl(not_ready, ready), sl(unknown)]) == [
        "10.42.1.5", "10.42.2.5",
    ]  # fmt: skip


def test_the_webhook_needs_its_ca_bundle() -> None:
    def vwc(*bundles: str) -> dict[str, Any]:
        return {"webhooks": [{"clientConfig": {"caBundle": b}} for b in bundles]}

    assert ingress.webhook_pending(None) is not None
    assert ingress.webhook_pending({"webhooks": []}) is not None
    assert ingress.webhook_pending(vwc("")) is not None
    assert ingress.webhook_pending(vwc("Q0E=", "")) is not None
    assert ingress.webhook_pending(vwc("Q0E=")) is None


def test_pending_reads_a_kubectl_list_and_names_each_missing_piece() -> None:
    objects, slices = fake_rke.ingress_world(ready=True)
    assert ingress.pending(RKE_INGRESS, ingress.items(objects), ingress.items(slices)) == []
    # the same answer for the other engine's names finds nothing of its own
    rke2 = ingress.pending(RKE2_INGRESS, ingress.items(objects), ingress.items(slices))
    assert [p.split(":")[0] for p in rke2] == [
        "DaemonSet kube-system/rke2-ingress-nginx-controller",
        "ValidatingWebhookConfiguration rke2-ingress-nginx-admission",
    ]
    # a controller that is up, but whose webhook Service has no ready endpoint yet
    _, pending_slices = fake_rke.ingress_world(ready=False)
    assert ingress.pending(RKE_INGRESS, ingress.items(objects), ingress.items(pending_slices)) == [
        "Service ingress-nginx/ingress-nginx-controller-admission: no ready endpoint"
    ]


def test_items_accepts_a_list_one_object_or_nothing() -> None:
    assert ingress.items(None) == [] and ingress.items({}) == []
    assert ingress.items({"kind": "List", "items": []}) == []
    assert ingress.items({"kind": "DaemonSet"}) == [{"kind": "DaemonSet"}]
