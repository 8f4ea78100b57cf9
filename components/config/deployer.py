"""``multicloud:deployer``: where the machine that runs ``pulumi up`` sits in the network.

The deployer is whatever runs ``pulumi up``: the readiness gates SSH from it and
``rke up`` runs on it (both reach every node's SSH address on 22), and RKE and
pulumi-kubernetes talk from it to the Kubernetes API (6443) at the first control
plane's address. The firewall (``components/sites/firewall.py``) opens exactly the
ranges it comes from, and the preflight (``components/preflight/``) checks every
path from it. docs/network.md describes the model and common setups.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from components.config.model import Bool, CidrList, ConfigModel


class DeployerSettings(ConfigModel):
    """The typed ``multicloud:deployer`` object. Leave it out for the documented setup
    (a machine on the LAN of the one site reached with ``sshVia: private``)."""

    lan: str | None = Field(
        default=None,
        description=(
            "Name of the site whose LAN the deployer sits on; it reaches that site's "
            "`sshVia: private` nodes from the site's `lanCidr`. Unset: on no site's LAN."
        ),
    )
    overlay: Bool = Field(
        default=False,
        description=(
            "The deployer is a member of the cluster's ZeroTier network (an address in "
            "block 0 of `overlayCidr`, authorized by hand) and reaches nodes on their "
            "overlay addresses."
        ),
    )
    source_cidrs: CidrList | None = Field(
        default=None,
        min_length=1,
        description=(
            "Public ranges the deployer's traffic comes from when it reaches public "
            "addresses (for a machine on a LAN: the LAN router's public address). "
            "Default: `adminCidrs`."
        ),
    )


@dataclass(frozen=True)
class Deployer:
    """The deployer as resolved from the config (explicit or default).

    ``lan``/``lan_cidr``: the site whose LAN it sits on and that LAN's range, or None;
    ``overlay``: it reaches overlay addresses; ``sources``: the public source ranges it
    reaches public addresses from; ``explicit``: ``multicloud:deployer`` was set.
    """

    lan: str | None
    lan_cidr: str | None
    overlay: bool
    sources: tuple[str, ...]
    explicit: bool

    def describe(self) -> str:
        """One line for the reachability table's header."""
        where = [f"on the LAN of site {self.lan} ({self.lan_cidr})"] if self.lan else []
        if self.overlay:
            where.append("on the overlay (block 0)")
        where.append(f"public sources {', '.join(self.sources)}")
        origin = "multicloud:deployer" if self.explicit else "default (multicloud:deployer unset)"
        return f"deployer {'; '.join(where)} [{origin}]"
