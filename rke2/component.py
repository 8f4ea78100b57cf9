"""The RKE2 engine's Pulumi wiring, in two halves around the sites.

``Rke2Bootstrap`` (before the sites): the server and agent tokens, the previous ``rke2``
record read back through a StackReference to this very stack, the join plan, and each
node's user-data. ``Rke2Cluster`` (after the sites): per node a delete-time drain that
Pulumi runs before the node's VM goes (docs/rke2.md#removing-nodes); ONE command, with no
``delete``, that waits until every node is Ready and prints the kubeconfig
(docs/rke2.md#the-cluster-ready-command-and-the-kubeconfig); then the
system-upgrade-controller and its Plans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls
import yaml
from pulumi_command import remote

from components.boot.document import render_user_data
from components.boot.host_key import HostKey
from components.boot.overlay import OverlayFiles
from components.boot_record import user_data_digest
from components.cluster_node import ClusterNode
from components.cluster_provider import cluster_provider
from components.config import ClusterConfig, DigitalOceanSiteConfig, Secrets
from components.nodes import NodeSpec
from components.overlay.network import Overlay
from components.previous import this_stack
from rke2 import config_yaml, join, manifests, scripts, upgrade
from rke2.boot import Rke2Files, rke2_part
from rke2.join import ClusterRecord, JoinError, JoinPlan, check_not_rke, plan_join, steady_plan

API_PORT = 6443
# The release the boot record's digest renders every install script with: the upgrade
# Plans move each node to the stack's release in place (rke2/upgrade.py), so the release a
# node booted with is no drift, while a change to the script itself still is.
IN_PLACE_RELEASE = "v0.0.0+rke2r0"
READY_TIMEOUT_SECONDS = 30 * 60
# The serving certificate RKE2 generates always carries the DNS name `kubernetes` (K3s
# pkg/daemons/control/deps/deps.go, genServerCerts): the kubeconfig verifies against it,
# whichever address the deployer uses to reach the server.
TLS_SERVER_NAME = "kubernetes"
RECORD_OUTPUT = "rke2"
# The record's mark of a cluster whose servers were created with ``agent-token``; a record
# without it is a cluster whose agents hold the server token (``agent_tokens_separate``).
SEPARATE_AGENT_TOKEN = "separateAgentToken"
AGENT_TOKEN_WARNING = (
    "rke2: this cluster was created before agents got their own token: every agent holds the "
    "server token and can join as a server. New nodes keep it so they can join; build a new "
    "stack to separate them (docs/rke2.md, 'Tokens')"
)


def agent_tokens_separate(record: Any) -> bool:
    """Whether the cluster the previous record describes gives agents their own token: a new
    cluster (no record) does; one recorded before the separation does not (its servers'
    boot-only config has no ``agent-token``: ``config_yaml.node_config``)."""
    return record is None or (
        isinstance(record, Mapping) and record.get(SEPARATE_AGENT_TOKEN) is True
    )


def external_ip_source(config: ClusterConfig, spec: NodeSpec) -> str | None:
    """Where the node's public address comes from (``config_yaml.EXTERNAL_IP_SOURCES``),
    None when it has none: ``floating-ip`` (OpenStack, ``floatingIpPool``) is passed in by
    the site, which allocates the address before the VM; ``default-route`` is read on the
    node at boot."""
    site = config.settings.sites[spec.site]
    if isinstance(site, DigitalOceanSiteConfig):
        return "default-route"
    if getattr(site, "floating_ip_pool", None):
        return "floating-ip"
    if getattr(site, "network_is_public", False):
        return "default-route"
    return None


def rke2_files(
    spec: NodeSpec,
    config: ClusterConfig,
    plan: JoinPlan,
    *,
    token: str,
    agent_token: str | None,
    interface: str,
    s3: config_yaml.S3Credentials | None,
    public_address: str | None = None,
    release: str | None = None,
) -> Rke2Files:
    """Everything RKE2-specific in one node's user-data (pure). ``public_address``: the
    node's floating IP, required when its site allocates one (raises ``ValueError``
    otherwise); ``release``: the RKE2 release the install script fetches (default: the
    stack's ``kubernetesVersion``)."""
    settings = config.settings
    specs = {n.name: n for n in config.nodes}
    cluster = config_yaml.ConfigYamlSettings(
        cluster_name=settings.cluster_name,
        rke=settings.rke,
        masters_schedulable=settings.masters_schedulable,
    )
    role = config_yaml.role(spec)
    source = external_ip_source(config, spec)
    if source == "floating-ip" and not public_address:
        raise ValueError(f"{spec.name}: its site allocates a floating IP; pass its address")
    document = config_yaml.node_config(
        spec,
        cluster,
        token=token,
        agent_token=agent_token,
        server_url=plan.server_url(spec.name, specs),
        s3=s3,
        external_ip=public_address if source == "floating-ip" else None,
    )
    config_yaml.check_keys(document, role)
    extra = (
        {
            name: yaml.safe_dump(manifest, sort_keys=False)
            for name, manifest in manifests.server_manifests(
                interface, settings.rke.ingress.enabled
            ).items()
        }
        if role == "server"
        else {}
    )
    return Rke2Files(
        role=role,
        config_yaml=config_yaml.render(document),
        install_script=scripts.install_script(
            release or settings.kubernetes_version, role, spec.zerotier_ip
        ),
        external_ip_script=(
            config_yaml.external_ip_dropin(source) if source == "default-route" else None
        ),
        manifests=extra,
        environment=config_yaml.service_environment(settings.rke, role),
    )


class Rke2Bootstrap(pulumi.ComponentResource):
    """The tokens, the join plan and every node's user-data (before any VM)."""

    token: pulumi.Output[str]  # the server token: servers only
    agent_token: pulumi.Output[str]  # the agent token: servers and agents
    separate: pulumi.Output[bool]  # agents get agent_token (False: a cluster from before)
    plan: pulumi.Output[JoinPlan]

    def __init__(
        self,
        name: str,
        config: ClusterConfig,
        secrets: Secrets,
        overlay: Overlay,
        host_keys: Mapping[str, tls.PrivateKey] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:rke2:Rke2Bootstrap", name, None, opts)
        settings = config.settings
        self._config = config
        self._overlay = overlay
        self._secrets = secrets
        self._host_keys = host_keys or {}
        self.token = random.RandomPassword(
            f"{name}-token", length=64, special=False, opts=pulumi.ResourceOptions(parent=self)
        ).result
        self.agent_token = random.RandomPassword(
            f"{name}-agent-token",
            length=64,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        ).result
        previous_stack = this_stack(f"{name}-previous", parent=self)

        def separate(record: Any) -> bool:
            if not agent_tokens_separate(record):
                pulumi.log.warn(AGENT_TOKEN_WARNING, resource=self)
                return False
            return True

        self.separate = previous_stack.get_output(RECORD_OUTPUT).apply(separate)

        def decide(values: list[Any]) -> JoinPlan:
            record, nodes = values
            try:
                previous = ClusterRecord.from_output(record)
                check_not_rke(nodes, previous)
                return plan_join(
                    config.nodes,
                    rebuild=settings.rebuild,
                    previous=previous,
                    kubernetes_version=settings.kubernetes_version,
                    previous_nodes=_node_names(nodes),
                )
            except JoinError as err:  # phrased for the person editing the stack
                raise pulumi.RunError(str(err)) from None

        self.plan = pulumi.Output.all(
            previous_stack.get_output(RECORD_OUTPUT), previous_stack.get_output("nodes")
        ).apply(decide)
        # the boot record's digest of each node's user-data (``boot_digests``): rendered with
        # the plan of a quiet update, whose join targets a later VM of the node gets
        self._steady = self.plan.apply(lambda p: steady_plan(config.nodes, p))
        self.boot_digests: dict[str, pulumi.Output[str]] = {}
        self.register_outputs({})

    def user_data(
        self, node: NodeSpec, public_address: pulumi.Input[str] | None = None
    ) -> pulumi.Output[str]:
        """The node's cloud-init: ZeroTier first, then RKE2 joined as the plan says, and the
        node's SSH host key when the program generated one. A secret. ``public_address``:
        the floating IP the site allocated for the node (``node-external-ip``), if any."""
        overlay, settings, secrets = self._overlay, self._config.settings, self._secrets
        identity = overlay.identities[node.name]
        host_key = self._host_keys.get(node.name)
        key_halves: list[Any] = (
            [host_key.private_key_openssh, host_key.public_key_openssh]
            if host_key
            else [None, None]
        )
        s3_keys: list[Any] = []
        if settings.rke.etcd.s3 is not None and "etcd" in node.roles:
            assert secrets.etcd_s3_access_key is not None
            assert secrets.etcd_s3_secret_key is not None
            s3_keys = [secrets.etcd_s3_access_key, secrets.etcd_s3_secret_key]

        def render(values: list[Any], release: str | None = None) -> str:
            (network_id, secret, public, token, agent_token, separate, plan, interface, address,
             private_key, public_key, *keys) = values  # fmt: skip
            return render_user_data(
                node,
                ssh_user=settings.ssh_user,
                ssh_public_key=settings.ssh_public_key,
                overlay=OverlayFiles(network_id, secret, public),
                engine=rke2_part(
                    rke2_files(
                        node,
                        self._config,
                        plan,
                        token=token,
                        agent_token=agent_token if separate else None,
                        interface=interface,
                        s3=config_yaml.S3Credentials(*keys) if keys else None,
                        public_address=address,
                        release=release,
                    )
                ),
                host_key=HostKey(private_key, public_key) if private_key else None,
            )

        def rendered(
            plan: pulumi.Output[JoinPlan], release: str | None = None
        ) -> pulumi.Output[str]:
            return pulumi.Output.all(
                overlay.network_id,
                identity.secret,
                identity.public,
                self.token,
                self.agent_token,
                self.separate,
                plan,
                overlay.interface,
                public_address,
                *key_halves,
                *s3_keys,
            ).apply(lambda values: render(values, release))

        steady = rendered(self._steady, IN_PLACE_RELEASE).apply(
            lambda text: user_data_digest(join.without_join_target(text))
        )
        self.boot_digests[node.name] = pulumi.Output.unsecret(steady)
        return pulumi.Output.secret(rendered(self.plan))


TYPED: dict[str, Any] = {
    "Namespace": k8s.core.v1.Namespace,
    "ServiceAccount": k8s.core.v1.ServiceAccount,
    "ConfigMap": k8s.core.v1.ConfigMap,
    "Deployment": k8s.apps.v1.Deployment,
    "ClusterRole": k8s.rbac.v1.ClusterRole,
    "Role": k8s.rbac.v1.Role,
    "ClusterRoleBinding": k8s.rbac.v1.ClusterRoleBinding,
    "RoleBinding": k8s.rbac.v1.RoleBinding,
    "CustomResourceDefinition": k8s.apiextensions.v1.CustomResourceDefinition,
}


def _host_key(node: ClusterNode) -> pulumi.Output[Any]:
    """The node's SSH host public key, or an Output of None (no pin) for a node without one."""
    return node.host_key if node.host_key is not None else pulumi.Output.from_input(None)


def _node_names(rows: Any) -> list[str]:
    """Node names in a previous ``nodes`` stack output (a list of node-table rows)."""
    if not isinstance(rows, list):
        return []
    return [str(r["name"]) for r in rows if isinstance(r, Mapping) and "name" in r]


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


def rewrite_kubeconfig(text: str, address: str) -> str:
    """RKE2's admin kubeconfig pointed at ``address`` (it says https://127.0.0.1:6443).

    ``tls-server-name`` keeps verification against the cluster CA, for the name every
    RKE2 serving certificate carries. Raises ``ValueError`` for a document without clusters.
    """
    if not text:
        return ""
    document = yaml.safe_load(text)
    clusters = document.get("clusters") if isinstance(document, dict) else None
    if not clusters:
        raise ValueError("the kubeconfig RKE2 wrote has no clusters")
    for entry in clusters:
        entry["cluster"]["server"] = f"https://{address}:{API_PORT}"
        entry["cluster"]["tls-server-name"] = TLS_SERVER_NAME
    return yaml.safe_dump(document, sort_keys=False)


class Rke2Cluster(pulumi.ComponentResource):
    """The RKE2 cluster the nodes form; the same outputs as ``rke.component.RkeCluster``."""

    kubeconfig: pulumi.Output[str]
    command: remote.Command  # the cluster-ready command: what downstream depends on
    record: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        nodes: Sequence[ClusterNode],
        bootstrap: Rke2Bootstrap,
        config: ClusterConfig,
        ssh_private_key: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:rke2:Rke2Cluster", name, None, opts)
        settings = config.settings
        by_name: Mapping[str, ClusterNode] = {n.name: n for n in nodes}
        plan = bootstrap.plan
        key = pulumi.Output.secret(ssh_private_key)

        def connection(pick: Callable[[JoinPlan], ClusterNode]) -> remote.ConnectionArgs:
            """SSH to the node the plan picks, pinning that node's host key (pulumi-command
            v1.2.1 ``SSHConfig``: ``ssh.FixedHostKey``; without it no key is checked)."""
            return remote.ConnectionArgs(
                host=plan.apply(lambda p: pick(p).ssh_address),
                host_key=plan.apply(lambda p: _host_key(pick(p))),
                user=settings.ssh_user,
                private_key=key,
                dial_error_limit=60,  # servers may still be booting: about 30 min
                per_dial_timeout=30,
            )

        # Per node: drain and delete its Node before its VM goes (delete-time only). A
        # replaced VM (delete-first, components/sites/base.py) replaces this command too
        # (`triggers`), so Pulumi runs its delete before deleting the VM
        # (calculateDependentReplacements in pkg/resource/deploy/step_generator.go); for a
        # server that removes its etcd member (K3s's member controller, rke2/scripts.py) and
        # the server stops its etcd and control-plane static pods (rke2 pkg/rke2/spc.go,
        # watchForSelfDelete). RKE2 also refuses a new machine under a name whose Node still
        # exists. Each command depends on every one registered before it (servers first,
        # then agents), so nodes that leave together are drained one at a time, the last
        # registered first: stepGenerator.ScheduleDeletes deletes dependents before their
        # dependencies, looking at direct edges only (deploymentExecutor.Execute skips
        # deleting the dependencies of a failed delete). Each also depends on the server it
        # runs against (JoinPlan.runner: one that stays through any update draining this
        # node), so that server's VM is never deleted before the drain ran.
        leaving: list[pulumi.Resource] = []
        drain_timeout = settings.rke.upgrade.drain_timeout_seconds
        chain = sorted(nodes, key=lambda n: "etcd" not in n.roles)
        for node in chain:

            def runner(p: JoinPlan, node: ClusterNode = node) -> ClusterNode:
                return by_name[p.runner(node.name)]

            def runner_vm(p: JoinPlan, node: ClusterNode = node) -> pulumi.Resource:
                return runner(p, node).vm

            def runner_member(p: JoinPlan, node: ClusterNode = node) -> pulumi.Resource:
                server = runner(p, node)
                return server.member or server.vm

            depends: list[pulumi.Input[pulumi.Resource]] = [node.vm]
            depends += [node.member] if node.member else []
            depends += [plan.apply(runner_vm), plan.apply(runner_member), *leaving]
            leaving.append(
                remote.Command(
                    f"{node.name}-leave",
                    connection=connection(runner),
                    delete=scripts.remove_node_script(
                        node.name, drain_timeout, is_server="etcd" in node.roles
                    ),
                    triggers=[node.vm.id] if isinstance(node.vm, pulumi.CustomResource) else None,
                    logging=remote.Logging.STDERR,
                    opts=pulumi.ResourceOptions(
                        parent=self, depends_on=depends, delete_before_replace=True
                    ),
                )
            )

        vms = [n.vm for n in nodes]
        members = [n.member for n in nodes if n.member is not None]
        vm_ids = [vm.id for vm in vms if isinstance(vm, pulumi.CustomResource)]
        ready_script = scripts.cluster_ready_script(
            [n.name for n in nodes], READY_TIMEOUT_SECONDS, ingress=settings.rke.ingress.enabled
        )
        self.command = remote.Command(
            f"{name}-nodes-ready",
            connection=connection(lambda p: by_name[p.anchor]),
            # The VM ids make a replaced VM an *update* of this command (pulumi-command
            # re-runs `create` when it has no `update`), not a replacement: only `triggers`
            # replace a command (provider/pkg/provider/common/inputs.go, replaceOnChanges).
            # The kubeconfig it prints may still move (a new anchor): the Kubernetes
            # providers are identified by the cluster's name (components/cluster_provider.py).
            create=pulumi.Output.all(*vm_ids).apply(
                lambda ids: f"# machines: {' '.join(str(i) for i in ids)}\n{ready_script}"
            ),
            logging=remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*vms, *members, *leaving],
                additional_secret_outputs=["stdout"],
            ),
        )
        # The address comes from the command's own connection (an output of the command),
        # not from the anchor's VM, for the same reason: the kubeconfig depends on the
        # command alone.
        anchor_address = self.command.connection.apply(lambda c: c.host)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.command.stdout, anchor_address).apply(
                lambda v: rewrite_kubeconfig(v[0], v[1])
            )
        )
        plans = self._upgrades(name, config)
        self.record = pulumi.Output.all(
            self.command.id, plan, bootstrap.separate, *[p.id for p in plans]
        ).apply(lambda v: v[1].record.to_output() | ({SEPARATE_AGENT_TOKEN: True} if v[2] else {}))
        self.register_outputs({"kubeconfig": self.kubeconfig, "record": self.record})

    def _upgrades(self, name: str, config: ClusterConfig) -> list[pulumi.CustomResource]:
        """The system-upgrade-controller and the Plans that carry kubernetesVersion."""
        settings = config.settings
        provider = cluster_provider(
            f"{name}-k8s",
            self.kubeconfig,
            settings.cluster_name,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.command]),
        )

        def register(suffix: str, manifest: dict[str, Any], *deps: pulumi.Resource) -> Any:
            options = pulumi.ResourceOptions(
                parent=self, provider=provider, depends_on=[self.command, *deps]
            )
            kind = manifest["kind"]
            if kind not in TYPED:  # custom resources (Plans)
                return k8s.apiextensions.CustomResource(
                    f"{name}-{suffix}",
                    api_version=manifest["apiVersion"],
                    kind=kind,
                    metadata=manifest["metadata"],
                    spec=manifest["spec"],
                    opts=options,
                )
            fields = {_snake(k): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
            return TYPED[kind](f"{name}-{suffix}", **fields, opts=options)

        # The controller also creates this CRD at start (pkg/upgrade/controller.go,
        # registerCRD) from the same file; Pulumi owns it so the Plans can depend on it, and
        # pulumi.com/patchForce settles the field-manager conflict with that update.
        crd_manifest = upgrade.plan_crd()
        crd_manifest = {
            **crd_manifest,
            "metadata": {
                **crd_manifest["metadata"],
                "annotations": {
                    **crd_manifest["metadata"].get("annotations", {}),
                    "pulumi.com/patchForce": "true",
                },
            },
        }
        crd = register("plans-crd", crd_manifest)
        objects = upgrade.controller_objects()
        namespace = next(o for o in objects if o["kind"] == "Namespace")
        ns = register("suc-namespace", namespace)
        controller = [
            register(f"suc-{o['kind'].lower()}-{o['metadata']['name']}", o, ns, crd)
            for o in objects
            if o is not namespace
        ]
        version = settings.kubernetes_version
        return [
            register(f"plan-{p['metadata']['name']}", p, *controller)
            for p in upgrade.plans(version, settings.rke.upgrade)
        ]
