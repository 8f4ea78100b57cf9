"""RKE (v1)'s ingress-nginx, as ``components/ingress_admission.py`` waits for it.

Names, RKE (v1): the Kubernetes 1.30 template ``nginxIngressv1112Rancher2`` (``>=1.30.5``;
rancher/kontainer-driver-metadata ``pkg/rke/templates/templates.go`` and
``nginx-v1.11.2-rancher2.go``, branch dev-v2.10, which RKE embeds as its ``data/data.json``):
namespace ``ingress-nginx`` (also ``NginxIngressAddonAppNamespace`` in RKE's
``cluster/addons.go``), DaemonSet ``nginx-ingress-controller`` ("Rancher specific: Do NOT
change the name"), webhook Service ``ingress-nginx-controller-admission`` (port
``https-webhook`` -> the controller's ``webhook`` port), ValidatingWebhookConfiguration
``ingress-nginx-admission``, and the Jobs ``ingress-nginx-admission-create`` (makes the
certificate Secret the controller mounts) and ``ingress-nginx-admission-patch`` (writes
the CA into the webhook configuration; RKE's ``NginxIngressAddonJobNames``).
"""

from __future__ import annotations

from components.ingress_admission import IngressController

RKE_INGRESS = IngressController(
    namespace="ingress-nginx",
    daemonset="nginx-ingress-controller",
    webhook_service="ingress-nginx-controller-admission",
    webhook_configuration="ingress-nginx-admission",
    patch_job="ingress-nginx-admission-patch",
)
