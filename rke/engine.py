"""What the RKE v1 engine requires of the stack beyond cluster.yml's schema.

Kept with the engine so another engine (RKE2 sets kubelet's ``node-ip`` itself) can
own different rules; ``components/config/stack.py`` asks this module per site.
"""

from __future__ import annotations

ENGINE = "rke"


def ssh_via_problem(site: str, ssh_via: str) -> str | None:
    """Why RKE v1 cannot install nodes reached with ``sshVia: <ssh_via>``, or None.

    ``overlay`` makes a node's cluster.yml ``address`` (where RKE connects) equal its
    ``internal_address`` (the ZeroTier address every node uses). RKE v1 adds kubelet's
    ``--node-ip`` only when the two differ (rancher/rke ``cluster/plan.go``,
    ``BuildKubeletProcess``: ``if host.Address != host.InternalAddress``), so kubelet
    registers the address of the interface holding the default route, a LAN or VPC
    address the other sites cannot reach (logs, exec and metrics fail).
    """
    if ssh_via != "overlay":
        return None
    return (
        "'overlay' makes the node's RKE address equal its internal (overlay) address, and "
        "RKE v1 then starts kubelet without --node-ip, so the node registers a LAN address "
        "other sites cannot reach. Use sshVia: private (the deployer on the site's LAN, "
        f"multicloud:deployer.lan: {site}) or sshVia: public (the nodes have public addresses)"
    )
