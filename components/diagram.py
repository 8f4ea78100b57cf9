"""The architecture as a Mermaid flowchart, a pure function of the validated config."""

from __future__ import annotations

from components.config import ClusterConfig


def _id(text: str) -> str:
    return text.replace("-", "_").replace(".", "_")


def architecture_mermaid(config: ClusterConfig) -> str:
    settings = config.settings
    lines = ["flowchart TB"]
    entry = settings.entrypoint
    cloudflare = entry.cloudflare if entry is not None else None
    if cloudflare is not None:
        lines += [
            "  users((Users))",
            f'  dns["Cloudflare {cloudflare.record_name}<br/>follows a live ingress node"]',
            "  users --> dns",
        ]
    lines.append(f'  zt{{{{"ZeroTier overlay {settings.overlay_cidr}"}}}}')
    for name, site in settings.sites.items():
        label = f"{name} · {site.kind}" + (" · behind NAT" if not site.has_public_address else "")
        lines.append(f'  subgraph {_id(name)}["{label}"]')
        for node in config.site_nodes(name):
            short = node.name.removeprefix(f"{settings.cluster_name}-{name}-")
            roles = ", ".join(node.roles)
            lines.append(f'    {_id(node.name)}["{short}<br/>{roles}<br/>{node.zerotier_ip}"]')
        lines.append("  end")
        lines.append(f"  {_id(name)} <--> zt")
    lines.append('  rke[["RKE: rke up over SSH"]]')
    masters = [n for n in config.nodes if "controlplane" in n.roles]
    for node in masters:
        lines.append(f"  rke -.-> {_id(node.name)}")
    if cloudflare is not None:
        for node in config.nodes:
            if node.public_ingress:
                lines.append(f"  dns --> {_id(node.name)}")
    return "\n".join(lines) + "\n"
