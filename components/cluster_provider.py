"""The Kubernetes provider for this stack's cluster, identified by the cluster's name.

pulumi-kubernetes replaces a provider when its kubeconfig's active cluster changes (its
server among others) or is unknown, and with it every object it manages
(provider/pkg/provider/provider.go ``DiffConfig``; pulumi step_generator.go
``providerChanged``). The kubeconfig's server is a node's address (RKE: the first
control plane's; RKE2: the anchor's), which moves when that node is replaced: a rolled
master would delete and recreate every chart, workload and volume claim. With
``clusterIdentifier`` set, only a change of the identifier replaces the provider; a new
kubeconfig is an update.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def cluster_provider(
    name: str,
    kubeconfig: pulumi.Input[str],
    cluster_name: str,
    opts: pulumi.ResourceOptions | None = None,
) -> k8s.Provider:
    """A provider for the cluster named ``cluster_name`` (``multicloud:clusterName``)."""
    return k8s.Provider(
        name,
        kubeconfig=pulumi.Output.secret(kubeconfig),
        cluster_identifier=cluster_name,
        opts=opts,
    )
