"""Upgrades through the system-upgrade-controller: its objects and the two Plans.

The controller's objects are the pinned release's own manifests
(``reference/system-upgrade-controller/``, rancher/system-upgrade-controller v0.20.1) with
the two transformations its release build applies (``scripts/package-controller``:
``kustomize edit set image ...:<version>`` and the kustomization's ``namespace``). The
Plans follow RKE2's documented shape: servers first, one at a time, cordoned; agents
after every server (the ``prepare`` step waits for the server Plan), one at a time,
drained. Both are driven by ``kubernetesVersion``; the program refuses a downgrade
(``rke2.join.plan_join``).
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import yaml

from components.config.cluster import UpgradeSettings
from rke2.release import REFERENCE

SUC_VERSION = "v0.20.1"
SUC_NAMESPACE = "system-upgrade"
SUC_IMAGE = "rancher/system-upgrade-controller"
SUC_SERVICE_ACCOUNT = "system-upgrade"
UPGRADE_IMAGE = "rancher/rke2-upgrade"
SERVER_PLAN = "rke2-server"
AGENT_PLAN = "rke2-agent"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
_SUC_DIR = REFERENCE / "system-upgrade-controller"
_SUC_FILES = ("clusterrole.yaml", "clusterrolebinding.yaml", "system-upgrade-controller.yaml")

Manifest = dict[str, Any]


@cache
def _upstream() -> tuple[Manifest, ...]:
    docs: list[Manifest] = []
    for name in _SUC_FILES:
        docs += [d for d in yaml.safe_load_all((_SUC_DIR / name).read_text()) if d]
    return tuple(docs)


@cache
def plan_crd() -> Manifest:
    """The ``plans.upgrade.cattle.io`` CRD of the pinned controller (verbatim)."""
    crd: Manifest = yaml.safe_load((_SUC_DIR / "upgrade.cattle.io_plans.yaml").read_text())
    return crd


_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def controller_objects() -> list[Manifest]:
    """The controller's objects as its release asset has them (namespace and image set)."""
    objects = []
    for source in _upstream():
        obj = copy.deepcopy(source)
        if obj["kind"] not in _CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = SUC_NAMESPACE
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = SUC_NAMESPACE
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                if container["image"].split(":")[0] == SUC_IMAGE:
                    container["image"] = f"{SUC_IMAGE}:{SUC_VERSION}"
        objects.append(obj)
    return objects


def _plan(name: str, version: str, spec: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "upgrade.cattle.io/v1",
        "kind": "Plan",
        "metadata": {
            "name": name,
            "namespace": SUC_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "pulumi"},
        },
        "spec": {
            "concurrency": 1,
            "serviceAccountName": SUC_SERVICE_ACCOUNT,
            "version": version,
            "upgrade": {"image": UPGRADE_IMAGE},
            **spec,
        },
    }


def plans(version: str, upgrade: UpgradeSettings) -> list[Manifest]:
    """[server Plan, agent Plan] that bring every node to ``version``, one node at a time."""
    server = _plan(
        SERVER_PLAN,
        version,
        {
            "cordon": True,
            "nodeSelector": {
                "matchExpressions": [
                    {"key": CONTROL_PLANE_LABEL, "operator": "In", "values": ["true"]}
                ]
            },
            "tolerations": [
                {"key": CONTROL_PLANE_LABEL, "operator": "Exists", "effect": "NoSchedule"},
                {"key": "CriticalAddonsOnly", "operator": "Exists"},
            ],
        },
    )
    agent_spec: dict[str, Any] = {
        "nodeSelector": {
            "matchExpressions": [{"key": CONTROL_PLANE_LABEL, "operator": "DoesNotExist"}]
        },
        # The agent Plan waits until the server Plan has finished on every server.
        "prepare": {"image": UPGRADE_IMAGE, "args": ["prepare", SERVER_PLAN]},
    }
    if upgrade.drain:
        agent_spec["drain"] = {
            "force": True,
            "ignoreDaemonSets": True,
            "deleteEmptydirData": True,
            # a string goes to `kubectl drain` as is; an integer would be nanoseconds
            "timeout": f"{upgrade.drain_timeout_seconds}s",
        }
    else:
        agent_spec["cordon"] = True
    return [server, _plan(AGENT_PLAN, version, agent_spec)]
