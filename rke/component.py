"""RkeCluster: one ``local.Command`` that runs ``rke up`` once every node is ready, and per
master a command that removes its etcd member before its VM goes (``rke.etcd_leave``).

cluster.yml travels as the command's ``stdin`` (never ``triggers``): a changed
cluster.yml is an *update* that re-runs ``rke up`` (pulumi-command's ``Update`` runs the
``update`` command with the new inputs, ``local/commandController.go``); a replacement
would run the old resource's ``delete`` and start the new one without the previous
stdout. Standard input, unlike one environment variable, has no 128 KiB limit, and a
PR preview shows its diff as text. The command's stdout (rkestate, kubeconfig) is a
secret and is not logged; ``rke.runner.contract`` is the environment both sides share.

The command is ``protect``ed: a ``pulumi destroy``, a ``--replace`` or a change that
would replace it stops with an error instead of forgetting the cluster's state
(docs/recovery.md says how to remove it on purpose).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pulumi
from pulumi_command import local, remote

from components.cluster_node import ClusterNode
from rke.cluster_yml import ClusterYmlSettings, RkeNode, render_cluster_yml
from rke.etcd_leave import etcd_leave_script
from rke.runner.contract import CommandEnv, RestoreRequest, encode_map
from rke.state import kubeconfig_of


def runner_commands() -> tuple[str, str]:
    """(up, delete) shell commands, run from the project directory (the provider's cwd).

    The text is the same on every machine (a laptop, a CI runner), so moving the
    deployment between machines is not a change. No ``dir``: a ``dir`` stored in
    state by another machine would make ``delete`` fail before it starts.
    """
    python = 'py=venv/bin/python; [ -x "$py" ] || py=python3; '
    up = f'{python}exec "$py" -m rke.runner up'
    delete = (
        f'{python}"$py" -m rke.runner delete || '
        "echo 'rke.runner delete: the RKE cluster is NOT removed (see rke/runner.py)' >&2"
    )
    return up, delete


def _node_ids(gates: Sequence[pulumi.Resource], names: set[str]) -> pulumi.Output[str]:
    """JSON {node: machine id} from the readiness gates' stdout (see rke.readiness)."""
    commands = [g for g in gates if isinstance(g, remote.Command)]
    pairs = [pulumi.Output.all(g.urn, g.stdout) for g in commands]

    def collect(values: list[list[Any]]) -> str:
        ids = {}
        for urn, stdout in values:
            name = str(urn).rsplit("::", 1)[-1].removesuffix("-ready")
            if name in names and stdout:
                ids[name] = str(stdout).strip()
        return encode_map(ids)

    return pulumi.Output.all(*pairs).apply(collect)


def _host_keys(gates: Sequence[pulumi.Resource]) -> pulumi.Output[str]:
    """JSON {address: host key} the readiness gates pinned (their ``connection``), for the
    runner's own ssh (``RKE_HOST_KEYS``, rke.runner.contract); a gate without a pin adds nothing."""
    commands = [g for g in gates if isinstance(g, remote.Command)]

    def collect(connections: list[Any]) -> str:
        keys = {}
        for connection in connections:
            # pulumi output types are dicts keyed by the schema's (camelCase) names
            connection = connection or {}
            host = connection.get("host")
            key = connection.get("hostKey") or connection.get("host_key")
            if host and key:
                keys[str(host)] = str(key).strip()
        return encode_map(keys)

    return pulumi.Output.all(*[c.connection for c in commands]).apply(collect)


def etcd_leave_commands(
    nodes: Sequence[ClusterNode],
    ssh_user: str,
    ssh_private_key: pulumi.Input[str] | None,
    parent: pulumi.Resource,
) -> list[remote.Command]:
    """Per etcd node, a command whose delete removes its etcd member before its VM is
    deleted (``rke.etcd_leave``), run over SSH on another master (the first other one in
    the stack; the config never rebuilds two masters at once). The only master runs it on
    itself, where it refuses: deleting that machine loses the cluster's data.

    ``triggers`` carries the VM's id, so a VM replaced delete-first replaces this command
    first: Pulumi deletes the dependents a replacement would replace before the resource
    itself (``calculateDependentReplacements``, pkg/resource/deploy/step_generator.go;
    only ``triggers`` replace a command, pulumi-command common/inputs.go). A VM removed
    from the stack is deleted after it (``ScheduleDeletes``: dependents first), and so is
    the master it runs on (``depends_on``). The delete runs with the connection stored at
    the previous update (pulumi-command ``Command.Delete`` reads only the old state).
    """
    masters = [n for n in nodes if "etcd" in n.roles]
    commands = []
    for node in masters:
        runner = next((n for n in masters if n is not node), node)
        commands.append(
            remote.Command(
                f"{node.name}-etcd-leave",
                connection=remote.ConnectionArgs(
                    host=runner.ssh_address,
                    user=ssh_user,
                    private_key=(
                        pulumi.Output.secret(ssh_private_key)
                        if ssh_private_key is not None
                        else None
                    ),
                    host_key=runner.host_key,
                ),
                delete=etcd_leave_script(node.name),
                triggers=[node.vm.id] if isinstance(node.vm, pulumi.CustomResource) else None,
                logging=remote.Logging.STDERR,
                opts=pulumi.ResourceOptions(
                    parent=parent,
                    depends_on=[
                        node.vm,
                        *([node.member] if node.member else []),
                        runner.vm,
                        *([runner.member] if runner.member else []),
                    ],
                    delete_before_replace=True,
                ),
            )
        )
    return commands


def _kubeconfig(stdout: str | None) -> str:
    return kubeconfig_of(stdout)


def state_key() -> str:
    """``<project>/<stack>``: names the runner's private local copy of this stack's state."""
    return f"{pulumi.get_project()}/{pulumi.get_stack()}"


class RkeCluster(pulumi.ComponentResource):
    """The Kubernetes cluster RKE installs on ``nodes``."""

    kubeconfig: pulumi.Output[str]
    cluster_yml: pulumi.Output[str]
    command: local.Command

    def __init__(
        self,
        name: str,
        nodes: Sequence[ClusterNode],
        settings: ClusterYmlSettings,
        ready: Sequence[pulumi.Resource],
        ssh_private_key: pulumi.Input[str] | None = None,
        s3_access_key: pulumi.Input[str] | None = None,
        s3_secret_key: pulumi.Input[str] | None = None,
        flannel_iface: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:rke:RkeCluster", name, None, opts)
        if settings.s3_configured and (s3_access_key is None or s3_secret_key is None):
            raise ValueError("rke.etcd.s3 is configured but the S3 access/secret keys are missing")
        ordered = list(nodes)

        def render(values: list[str]) -> str:
            iface, addresses = values[0], values[1:]
            rke_nodes = [
                RkeNode.from_spec(n.spec, a) for n, a in zip(ordered, addresses, strict=True)
            ]
            return render_cluster_yml(rke_nodes, replace(settings, flannel_iface=iface))

        # The ZeroTier interface is known once the network exists (at preview when adopted).
        iface = settings.flannel_iface if flannel_iface is None else flannel_iface
        if not iface:
            raise ValueError("RkeCluster needs the flannel interface (settings or flannel_iface)")
        self.cluster_yml = pulumi.Output.all(iface, *[n.ssh_address for n in ordered]).apply(render)

        def secret(value: pulumi.Input[str] | None) -> pulumi.Input[str] | None:
            return None if value is None else pulumi.Output.secret(value)

        restore = settings.rke.restore
        environment = CommandEnv[pulumi.Input[str]](
            state_key=state_key(),
            node_ids=_node_ids(ready, {n.name for n in ordered}),
            host_keys=_host_keys(ready),
            restore=RestoreRequest(restore.snapshot, restore.s3).encode() if restore else None,
            ssh_private_key=secret(ssh_private_key),
            s3_access_key=secret(s3_access_key),
            s3_secret_key=secret(s3_secret_key),
        ).to_env()

        self.etcd_leave = etcd_leave_commands(nodes, settings.ssh_user, ssh_private_key, self)
        up, delete = runner_commands()
        self.command = local.Command(
            f"{name}-rke-up",
            create=up,
            update=up,
            delete=delete,
            stdin=self.cluster_yml,
            environment=environment,
            logging=local.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(ready),
                # stdout is the state; stderr is RKE's and kubectl's log, redacted by the
                # runner, still secret: it is stored and passed back to the next run
                # (PULUMI_COMMAND_STDERR), and a secret is never shown in plain text
                additional_secret_outputs=["stdout", "stderr"],
                protect=True,
            ),
        )
        self.kubeconfig = pulumi.Output.secret(self.command.stdout.apply(_kubeconfig))
        self.register_outputs({"kubeconfig": self.kubeconfig, "clusterYml": self.cluster_yml})
