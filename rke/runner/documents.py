"""cluster.yml as the runner reads it from standard input and writes it for ``rke``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from rke.runner.console import RunnerError, log

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster on 600 nodes
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a safe loader (C or Python)


def render(doc: Mapping[str, Any]) -> str:
    return yaml.dump(
        dict(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )


def read_cluster_yml(text: str) -> dict[str, Any]:
    """cluster.yml from standard input: a mapping with nodes, or a RunnerError."""
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as err:
        raise RunnerError(f"cluster.yml on standard input is not YAML: {err}") from None
    if not isinstance(doc, dict) or not doc.get("nodes"):
        raise RunnerError("cluster.yml on standard input has no nodes: nothing to deploy")
    return doc


def disk_cluster_yml(
    doc: Mapping[str, Any],
    key_path: Path | None,
    s3_access: str | None,
    s3_secret: str | None,
    keep_s3: bool = True,
) -> str:
    """The cluster.yml rke reads: ``doc`` plus the SSH key path and the S3 keys.

    ``ignore_docker_version`` is dropped: ``rke up`` overwrites it with its
    ``--ignore-docker-version`` flag (``setOptionsFromCLI`` in ``cmd/common.go``), which
    this runner never passes, so RKE checks each node's Docker version (the pinned 26.1
    is in its list for Kubernetes 1.30: ``loadK8sVersionDockerInfo`` in
    kontainer-driver-metadata ``pkg/rke/k8s_docker_info.go``). ``keep_s3=False`` drops
    the S3 block (a restore from a snapshot on the nodes: with an S3 block RKE would try
    S3 first, ``PrepareBackup`` in ``cluster/etcd.go``).
    """
    disk = json.loads(json.dumps(doc))  # a deep copy of plain data
    disk.pop("ignore_docker_version", None)
    if key_path is not None:
        disk["ssh_agent_auth"] = False
        disk["ssh_key_path"] = str(key_path)
    backup = disk.get("services", {}).get("etcd", {}).get("backup_config", {})
    s3 = backup.get("s3backupconfig")
    if not keep_s3:
        backup.pop("s3backupconfig", None)
    elif s3_access or s3_secret:
        if s3 is None:
            log("warning: S3 keys given but cluster.yml has no s3backupconfig; keys ignored")
        else:
            if s3_access:
                s3["access_key"] = s3_access
            if s3_secret:
                s3["secret_key"] = s3_secret
    return render(disk)


def check_network_plugin(state: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
    """Refuse a cluster.yml whose network plugin differs from the one the cluster runs.

    RKE would deploy the new plugin's addon next to the old one's (cluster/network.go
    ``deployNetworkPlugin`` has no migration) and pods would lose their network; RKE's
    documentation: "After you launch the cluster, you cannot change your network
    provider". The applied plugin is the state's ``currentState.rkeConfig.network.plugin``
    (RKE's default, canal, when unset; cluster/defaults.go ``DefaultNetworkPlugin``).
    """
    applied_config = (state.get("currentState") or {}).get("rkeConfig") or {}
    if not applied_config:
        return  # nothing applied yet
    applied = (applied_config.get("network") or {}).get("plugin") or "canal"
    wanted = (doc.get("network") or {}).get("plugin") or "canal"
    if applied != wanted:
        raise RunnerError(
            f"refusing `rke up`: the cluster runs the {applied} network plugin and cluster.yml "
            f"asks for {wanted}; RKE cannot change the plugin of a running cluster. Set "
            f"`pulumi config set --path rke.networkPlugin {applied}` (multicloud:rke."
            "networkPlugin). Nothing was changed."
        )


def ingress_enabled(doc: Mapping[str, Any]) -> bool:
    """Whether RKE deploys its ingress controller for this cluster.yml: any
    ``ingress.provider`` but ``none``; RKE's default when unset is nginx
    (``DefaultIngressController`` in cluster/defaults.go; ``deployIngress`` in
    cluster/addons.go skips, or removes, the controller only for ``none``)."""
    return str((doc.get("ingress") or {}).get("provider") or "nginx") != "none"
