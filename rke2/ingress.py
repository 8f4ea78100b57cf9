"""RKE2's packaged ingress-nginx, as ``components/ingress_admission.py`` waits for it.

Names, RKE2: the HelmChart ``rke2-ingress-nginx`` in ``kube-system`` (rancher/rke2
``charts/build-chart.sh``: ``metadata.name`` is the chart name, ``namespace`` defaults to
kube-system; ``charts/chart_versions.yaml`` at v1.35.7+rke2r1 lists it), so the Helm release
is ``rke2-ingress-nginx`` and the chart (rancher/rke2-charts
``packages/rke2-ingress-nginx``: upstream ingress-nginx 4.15.1 with ``name:
rke2-ingress-nginx`` and ``controller.kind: DaemonSet``) names, through
``ingress-nginx.fullname`` / ``controller.fullname`` / ``admissionWebhooks.fullname``
(kubernetes/ingress-nginx ``charts/ingress-nginx/templates/_helpers.tpl`` at
helm-chart-4.15.1): DaemonSet ``rke2-ingress-nginx-controller`` (as RKE2's own tests
check it, ``tests/docker/ingress-nginx/ingress-nginx_test.go``), Service
``rke2-ingress-nginx-controller-admission`` (``controller-service-webhook.yaml``),
ValidatingWebhookConfiguration ``rke2-ingress-nginx-admission``. Its admission Jobs are
Helm hooks deleted on success (``hook-delete-policy: before-hook-creation,hook-succeeded``),
so what is checked is their effect, the CA bundle, on both engines.
"""

from __future__ import annotations

from components.ingress_admission import IngressController

RKE2_INGRESS = IngressController(
    namespace="kube-system",
    daemonset="rke2-ingress-nginx-controller",
    webhook_service="rke2-ingress-nginx-controller-admission",
    webhook_configuration="rke2-ingress-nginx-admission",
    patch_job="rke2-ingress-nginx-admission-patch",
)
