"""multicloud: config -> preflight -> overlay -> engine -> sites -> cluster -> entrypoint
-> exports (and the boot record: which nodes are behind their code)."""

import pulumi

from components.boot_outputs import boot_outputs, boot_versions
from components.boot_record import BOOT_OUTPUT, DRIFT_OUTPUT
from components.cluster_node import node_table
from components.engine import StackParts
from components.host_keys import ssh_host_keys
from components.nodes import schedulable_zones
from components.overlay.network import Overlay
from components.services.cloudflare import Entrypoint
from components.services.cluster_services import ClusterServices
from components.services.network_policies import ClusterRanges
from components.sites.build import build_site
from engines import ENGINES, load_stack

# 0. The stack checked before anything is registered: the config parsed with the engines'
#    rules, then the network preflight over it (the firewall policy each site registers).
config, network, secrets = load_stack()
settings = config.settings
engine = ENGINES[settings.engine]

# 1. The overlay: a ZeroTier network, one identity and one authorized member per node.
overlay = Overlay(
    "overlay",
    cluster_name=settings.cluster_name,
    nodes=config.nodes,
    overlay_cidr=settings.overlay_cidr,
    token=secrets.zerotier_token,
    network_id=settings.zerotier_network_id,
    central_url=settings.zerotier_central_url,
    mtu=settings.overlay_mtu,
)

# 2. What each node installs at boot: the engine's part (Docker for RKE, RKE2 itself,
#    joined to the cluster), and the SSH host key the program generated for it (every SSH
#    client pins it).
host_keys = ssh_host_keys(config.nodes)
install = engine.install(StackParts(config, secrets, overlay, host_keys))

# 3. The sites: VMs that boot already joined to the overlay.
sites = [
    build_site(name, config, secrets, install.user_data, network.firewall[name])
    for name in settings.sites
]
nodes = [
    node.joined(overlay.members[node.name]).with_host_key(host_keys[node.name].public_key_openssh)
    for site in sites
    for node in site.nodes
]

# 4. The cluster: RKE runs `rke up` once every node is ready; RKE2 nodes form it themselves
#    and one command waits until all of them are Ready.
cluster = install.cluster(nodes)

# 5. The entrypoint and what runs in the cluster.
if settings.entrypoint is not None:
    entrypoint = None
    if settings.entrypoint.cloudflare is not None:
        assert secrets.cloudflare_api_token is not None
        entrypoint = Entrypoint(
            "entrypoint", settings.entrypoint, nodes, api_token=secrets.cloudflare_api_token
        )
        pulumi.export("recordName", entrypoint.record_name)
    services = ClusterServices(
        "services",
        settings.entrypoint,
        kubeconfig=cluster.kubeconfig,
        cluster_name=settings.cluster_name,
        cluster=cluster.command,
        zones=schedulable_zones(config.nodes),
        ranges=ClusterRanges(
            settings.overlay_cidr, settings.rke.pod_cidr, settings.rke.service_cidr
        ),
        engine=config.engine,
        updater_token=entrypoint.updater_token if entrypoint else None,
        cert_manager_token=entrypoint.cert_manager_token if entrypoint else None,
    )
    if services.app_url is not None:
        pulumi.export("appUrl", services.app_url)

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("overlayNetworkId", overlay.network_id)
pulumi.export("nodes", node_table(nodes))

# 6. The boot record: per node what its running VM was created from (image, size, boot
#    document), carried forward from the previous update, and the nodes behind their code.
boot = boot_outputs(nodes, boot_versions(engine.boot_versions(settings)), install.boot_digest)
pulumi.export(BOOT_OUTPUT, boot.record)
pulumi.export(DRIFT_OUTPUT, boot.drift)
