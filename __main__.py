"""multicloud: config -> overlay -> sites -> readiness -> RKE -> entrypoint -> exports."""

import pulumi

from components.config import load_config
from components.nodes import schedulable_zones
from components.overlay.network import Overlay
from components.program import build_site, cluster_settings, node_table
from components.services.cloudflare import Entrypoint
from components.services.cluster_services import ClusterServices
from rke.component import RkeCluster
from rke.readiness import node_readiness

config, secrets = load_config()  # validated before anything is registered
settings = config.settings

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

# 2. The sites: VMs that boot already joined to the overlay.
sites = [build_site(name, config, secrets, overlay) for name in settings.sites]
nodes = [node.joined(overlay.members[node.name]) for site in sites for node in site.nodes]

# 3. RKE, once every node has finished booting and holds its overlay address.
gates = [
    node_readiness(node, settings.ssh_user, secrets.ssh_private_key, overlay.interface)
    for node in nodes
]
cluster = RkeCluster(
    "cluster",
    nodes=nodes,
    settings=cluster_settings(settings),
    flannel_iface=overlay.interface,
    ready=gates,
    ssh_private_key=secrets.ssh_private_key,
    s3_access_key=secrets.etcd_s3_access_key,
    s3_secret_key=secrets.etcd_s3_secret_key,
)

# 4. The entrypoint and what runs in the cluster.
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
        cluster=cluster.command,
        zones=schedulable_zones(config.nodes),
        updater_token=entrypoint.updater_token if entrypoint else None,
        cert_manager_token=entrypoint.cert_manager_token if entrypoint else None,
    )
    if services.app_url is not None:
        pulumi.export("appUrl", services.app_url)

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("overlayNetworkId", overlay.network_id)
pulumi.export("nodes", node_table(config.nodes, {n.name: n.ssh_address for n in nodes}))
