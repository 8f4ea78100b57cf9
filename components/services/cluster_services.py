"""In-cluster services on the RKE cluster: DNS updater, cert-manager, Longhorn, example app.

Everything goes through one Kubernetes provider built from RKE's kubeconfig, and every object
also depends on the RKE command directly, so nothing is applied before ``rke up`` succeeded.
Each part is switched by its ``enabled`` flag and owns only its own resources.

The Helm releases' chart versions are exported as the stack output ``chartVersions`` and read
back on the next update through a StackReference to this stack: a version that would skip
minor releases upstream forbids skipping is refused before the release changes
(``chart_upgrades.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster_provider import cluster_provider
from components.config.engine_facts import EngineFacts
from components.config.entrypoint import EntrypointSettings
from components.previous import this_stack
from components.services import chart_upgrades, network_policies, workloads
from components.services.chart_upgrades import CERT_MANAGER, CHART_VERSIONS_OUTPUT, LONGHORN


class ClusterServices(pulumi.ComponentResource):
    """Workloads and charts of the cluster; exports ``app_url`` and ``record_name``.

    ``zones``: the sites with schedulable (worker-role) nodes, where Longhorn can place
    replicas (``components.nodes.schedulable_zones``).
    """

    provider: k8s.Provider
    record_name: str | None
    app_url: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        settings: EntrypointSettings,
        kubeconfig: pulumi.Input[str],
        cluster_name: str,
        cluster: pulumi.Resource,
        zones: Sequence[str],
        ranges: network_policies.ClusterRanges,
        engine: EngineFacts,
        updater_token: pulumi.Input[str] | None = None,
        cert_manager_token: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:cluster:ClusterServices", name, None, opts)
        self._engine = engine
        self._policies_by_namespace = network_policies.namespace_policies(
            ranges,
            engine,
            dns01=settings.cert_manager.enabled and settings.cert_manager.solver == "dns01",
        )
        if settings.updater.enabled and updater_token is None:
            raise ValueError("ClusterServices: updater.enabled requires updater_token")
        self._dns01 = settings.cert_manager.enabled and settings.cert_manager.solver == "dns01"
        if self._dns01 and cert_manager_token is None:
            raise ValueError(
                "ClusterServices: certManager.solver dns01 requires cert_manager_token"
            )
        self._cert_manager_token = cert_manager_token
        self._name = name
        self._cluster = cluster
        self.provider = cluster_provider(
            f"{name}-k8s",
            kubeconfig,
            cluster_name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster]),
        )
        self.record_name = settings.cloudflare.record_name if settings.cloudflare else None
        self.app_url = None
        self._versions = self._checked_versions(settings)
        self._deployed: dict[str, pulumi.Output[str | None]] = {}

        if settings.updater.enabled and updater_token is not None:
            self._updater(settings, updater_token)
        issuers: list[pulumi.Resource] = []
        if settings.cert_manager.enabled:
            issuers = self._cert_manager(settings)
        if settings.longhorn.enabled:
            self._longhorn(settings, len(set(zones)))
        if settings.app.enabled:
            self._app(settings, issuers)
            self.app_url = pulumi.Output.from_input(workloads.app_url(settings))

        # what the next update checks its chart versions against (rke2/join.py's record is
        # exported the same way): the releases' outputs, so a failed update keeps the old one
        recorded: pulumi.Input[Any] = pulumi.Output.all(**self._deployed) if self._deployed else {}
        pulumi.export(CHART_VERSIONS_OUTPUT, recorded)
        self.register_outputs({"appUrl": self.app_url, "recordName": self.record_name})

    def _checked_versions(self, settings: EntrypointSettings) -> pulumi.Output[dict[str, str]]:
        """The enabled charts' versions, once checked against what the stack runs."""
        targets: dict[str, tuple[str, bool]] = {}
        if settings.cert_manager.enabled:
            cm = settings.cert_manager
            targets[CERT_MANAGER] = (
                cm.chart_for(self._engine.cert_manager_chart),
                cm.chart_version is not None,
            )
        if settings.longhorn.enabled:
            lh = settings.longhorn
            targets[LONGHORN] = (lh.chart, lh.chart_version is not None)
        if not targets:
            return pulumi.Output.from_input({})
        previous_stack = this_stack(f"{self._name}-previous", parent=self)

        def decide(values: list[Any]) -> dict[str, str]:
            record, nodes = values
            try:
                previous = chart_upgrades.Previous.from_outputs(record, nodes)
                chart_upgrades.check_charts(previous, targets)
            except chart_upgrades.UpgradeError as err:  # phrased for the person editing it
                raise pulumi.RunError(str(err)) from None
            return {chart: version for chart, (version, _) in targets.items()}

        return pulumi.Output.all(
            previous_stack.get_output(CHART_VERSIONS_OUTPUT), previous_stack.get_output("nodes")
        ).apply(decide)

    def _opts(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=self, provider=self.provider, depends_on=[self._cluster, *depends_on]
        )

    def _namespace(self, part: str, name: str) -> k8s.core.v1.Namespace:
        manifest = workloads.namespace(name)
        return k8s.core.v1.Namespace(
            f"{self._name}-{part}-ns", metadata=manifest["metadata"], opts=self._opts()
        )

    def _network_policies(
        self, part: str, namespace: k8s.core.v1.Namespace, name: str
    ) -> list[pulumi.Resource]:
        """The namespace's NetworkPolicies (network_policies.py), registered with it."""
        return [
            k8s.networking.v1.NetworkPolicy(
                f"{self._name}-{part}-netpol-{manifest['metadata']['name']}",
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=self._opts(namespace),
            )
            for manifest in self._policies_by_namespace[name]
        ]

    def _release(
        self, chart: str, repo: str, namespace: str, values: dict[str, Any]
    ) -> k8s.helm.v3.Release:
        """A pinned chart in its own namespace, registered first with its NetworkPolicies.
        Its version is the checked one: a refused upgrade leaves the release as it is."""
        ns = self._namespace(chart, namespace)
        policies = self._network_policies(chart, ns, namespace)
        release = k8s.helm.v3.Release(
            f"{self._name}-{chart}",
            name=chart,
            chart=chart,
            version=self._versions.apply(lambda versions: versions[chart]),
            repository_opts={"repo": repo},
            namespace=namespace,
            values=values,
            opts=self._opts(ns, *policies),
        )
        self._deployed[chart] = release.version
        return release

    def _object(
        self, part: str, manifest: dict[str, Any], *deps: pulumi.Resource
    ) -> pulumi.Resource:
        """Register one built-in manifest with the typed resource for its kind."""
        kinds: dict[str, Any] = {
            "Deployment": k8s.apps.v1.Deployment,
            "Service": k8s.core.v1.Service,
            "Ingress": k8s.networking.v1.Ingress,
        }
        cls = kinds[manifest["kind"]]
        name = f"{self._name}-{part}-{manifest['kind'].lower()}"
        return cls(
            name, metadata=manifest["metadata"], spec=manifest["spec"], opts=self._opts(*deps)
        )

    def _secret(
        self,
        part: str,
        build: Callable[[str], dict[str, Any]],
        token: pulumi.Input[str],
        *deps: pulumi.Resource,
    ) -> k8s.core.v1.Secret:
        """A token Secret from ``build`` (a workloads function); the token stays a secret."""
        template = build("")
        return k8s.core.v1.Secret(
            f"{self._name}-{part}-secret",
            metadata=template["metadata"],
            type=template["type"],
            string_data=pulumi.Output.secret(token).apply(lambda t: build(t)["stringData"]),
            opts=pulumi.ResourceOptions.merge(
                self._opts(*deps),
                pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"]),
            ),
        )

    def _updater(self, settings: EntrypointSettings, token: pulumi.Input[str]) -> None:
        ns = self._namespace("updater", workloads.UPDATER_NAMESPACE)
        policies = self._network_policies("updater", ns, workloads.UPDATER_NAMESPACE)
        secret = self._secret("updater", workloads.updater_secret, token, ns)
        self._object("updater", workloads.updater_deployment(settings), ns, secret, *policies)

    def _cert_manager(self, settings: EntrypointSettings) -> list[pulumi.Resource]:
        release = self._release(
            CERT_MANAGER,
            workloads.CERT_MANAGER_REPO,
            workloads.CERT_MANAGER_NAMESPACE,
            workloads.cert_manager_values(dns01=self._dns01),
        )
        assert settings.cert_manager.email is not None  # validated when enabled
        deps: list[pulumi.Resource] = [release]
        if self._dns01:
            assert self._cert_manager_token is not None  # checked in __init__
            # after the Release, hence after the namespace _release registers before it
            deps.append(
                self._secret(
                    "cert-manager-token",
                    workloads.cert_manager_token_secret,
                    self._cert_manager_token,
                    release,
                )
            )
        issuers = workloads.cluster_issuers(
            settings.cert_manager.email, settings.cert_manager.solver
        )
        return [
            k8s.apiextensions.CustomResource(
                f"{self._name}-{issuer['metadata']['name']}",
                api_version=issuer["apiVersion"],
                kind=issuer["kind"],
                metadata=issuer["metadata"],
                spec=issuer["spec"],
                opts=self._opts(*deps),
            )
            for issuer in issuers
        ]

    def _longhorn(self, settings: EntrypointSettings, zone_count: int) -> None:
        self._release(
            LONGHORN,
            workloads.LONGHORN_REPO,
            workloads.LONGHORN_NAMESPACE,
            workloads.longhorn_values(settings, zone_count, self._engine.longhorn_network_policy),
        )

    def _app(self, settings: EntrypointSettings, issuers: Sequence[pulumi.Resource]) -> None:
        ns = self._namespace("app", workloads.APP_NAMESPACE)
        policies = self._network_policies("app", ns, workloads.APP_NAMESPACE)
        for manifest in workloads.app_manifests(settings):
            deps = [ns, *policies, *issuers] if manifest["kind"] == "Ingress" else [ns, *policies]
            self._object("app", manifest, *deps)
