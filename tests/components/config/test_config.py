"""Stack config validation: every bad input names its key path and what was expected."""

from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

import pytest

from components.config import ConfigError
from components.overlay.addressing import overlay_address
from engines import check_stack

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc8rZrYJr7N0C5mL0nRr7Qy1q2m6hB4xJ1oVwE9Zs3k ops@example"


def base() -> dict[str, Any]:
    return {
        "clusterName": "mc",
        "sshPublicKey": KEY,
        "adminCidrs": ["198.51.100.0/24"],
        "sites": {
            "ramnode": {
                "kind": "openstack",
                "siteId": 1,
                "cloud": "ramnode",
                "image": "Debian 12",
                "flavor": "4GB",
                "network": "Public",
                "networkIsPublic": True,
                "ingress": "public",
                "masters": 1,
                "workers": 1,
            },
            "home": {
                "kind": "openstack",
                "siteId": 2,
                "cloud": "home",
                "image": "debian-12",
                "flavor": "g1.medium",
                "network": "GATEWAY_NET",
                "lanCidr": "192.168.50.0/24",
                "sshVia": "private",
                "masters": 1,
                "workers": 2,
            },
            "digitalocean": {
                "kind": "digitalocean",
                "siteId": 3,
                "region": "nyc1",
                "size": "s-2vcpu-4gb",
                "image": "debian-12-x64",
                "ingress": "public",
                "masters": 1,
                "workers": 1,
            },
        },
    }


def with_(path: str, value: Any, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``raw`` (default: base()) with ``path`` (dotted) set; value DELETE removes it."""
    raw = copy.deepcopy(raw or base())
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


DELETE = object()
CLOUDFLARE_ENTRYPOINT = {
    "cloudflare": {"zoneId": "0" * 32, "zone": "example.com", "recordName": "*.k8s.example.com"},
    "certManager": {"email": "ops@example.com"},
}


def test_base_config_is_valid() -> None:
    config = check_stack(base())[0]
    assert [n.name for n in config.nodes] == [
        "mc-ramnode-master-0",
        "mc-ramnode-worker-0",
        "mc-home-master-0",
        "mc-home-worker-0",
        "mc-home-worker-1",
        "mc-digitalocean-master-0",
        "mc-digitalocean-worker-0",
    ]
    home = config.site_nodes("home")
    assert home[0].roles == ("controlplane", "etcd")
    assert home[1].roles == ("worker",)
    assert all(n.ingress == "none" for n in home)  # home is behind NAT, no ingress set
    assert config.site_nodes("ramnode")[1].ingress == "public"
    assert config.site_nodes("ramnode")[0].ingress == "none"  # masters do not carry ingress
    assert config.deployer.lan == "home"  # the one sshVia: private site, by default
    assert config.deployer.sources == ("198.51.100.0/24",) and not config.deployer.explicit


def test_defaults_match_pulumi_yaml() -> None:
    """Pulumi.yaml defaults (applied by the CLI) and the model's defaults must agree."""
    import yaml

    from scripts.offline import ROOT

    schema = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    settings = check_stack(base())[0].settings
    for key, declared in schema.items():
        if "default" not in declared:
            continue
        # "" means "create a network" and "the engine's default" (rke here) respectively
        field = {"zerotierNetworkId": None, "kubernetesVersion": "v1.30.14-rancher1-1"}.get(
            key, declared["default"]
        )
        attr = "".join("_" + c.lower() if c.isupper() else c for c in key)
        assert getattr(settings, attr) == field or (key == "zerotierNetworkId"), key


def _too_many_nodes() -> dict[str, Any]:
    """3 sites x (1 master + 200 workers), the largest the overlay takes, plus 40 more."""
    raw = base()
    for site in raw["sites"].values():
        site["workers"] = 200
    raw["sites"]["extra"] = {
        **raw["sites"]["digitalocean"],
        "siteId": 4,
        "masters": 0,
        "workers": 40,
    }
    return raw


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("typo in a site key", with_("sites.home.worker", 2), "sites.home.worker: unknown key"),
    ("typo at top level", with_("clusterNmae", "x"), "clusterNmae: unknown key"),
    ("wrong type for a count", with_("sites.home.workers", "two"), "sites.home.workers"),
    ("boolean as a count", with_("sites.home.workers", True), "sites.home.workers"),
    (
        "negative count",
        with_("sites.home.workers", -1),
        "sites.home.workers: Input should be greater than or equal to 0",
    ),
    (
        "site name not DNS-1123",
        with_("sites", {**base()["sites"], "Home_Lab": base()["sites"]["home"] | {"siteId": 9}}),
        "sites.Home_Lab",
    ),
    (
        "unknown kind",
        with_("sites.home.kind", "aws"),
        "sites.home.kind: expected 'openstack' or 'digitalocean'",
    ),
    ("missing kind", with_("sites.home.kind", DELETE), "sites.home.kind: missing"),
    ("missing openstack image", with_("sites.home.image", DELETE), "sites.home.image: missing"),
    (
        "missing droplet size",
        with_("sites.digitalocean.size", DELETE),
        "sites.digitalocean.size: missing",
    ),
    (
        "both cloud and auth",
        with_(
            "sites.home.auth", {"authUrl": "https://x:5000/v3", "userName": "u", "projectName": "p"}
        ),
        "sites.home: set exactly one of cloud",
    ),
    (
        "invalid admin CIDR",
        with_("adminCidrs", ["300.1.1.0/24"]),
        "adminCidrs[0]: '300.1.1.0/24' is not a network",
    ),
    ("host bits in a CIDR", with_("adminCidrs", ["198.51.100.1/24"]), "adminCidrs"),
    ("invalid overlay CIDR", with_("overlayCidr", "10.147.0.0/33"), "overlayCidr"),
    (
        "overlay too small",
        with_("overlayCidr", "10.147.0.0/24"),
        "overlayCidr: expected an IPv4 network of /23 or larger",
    ),
    (
        "malformed SSH key",
        with_("sshPublicKey", "ssh-ed25519 not-base64!"),
        "sshPublicKey: expected one OpenSSH public key",
    ),
    (
        "SSH key body of another type",
        with_("sshPublicKey", KEY.replace("ssh-ed25519", "ssh-rsa", 1)),
        "sshPublicKey: the key's body does not match its type",
    ),
    (
        "malformed Kubernetes version",
        with_("kubernetesVersion", "1.30"),
        "kubernetesVersion: expected an RKE version",
    ),
    (
        "Kubernetes version RKE lacks",
        with_("kubernetesVersion", "v1.29.9-rancher1-1"),
        "kubernetesVersion: RKE v1.8.14 does not ship",
    ),
    (
        "zero etcd members",
        with_(
            "sites.ramnode.masters",
            0,
            with_("sites.home.masters", 0, with_("sites.digitalocean.masters", 0)),
        ),
        "sites: no etcd member",
    ),
    ("even etcd members", with_("sites.home.masters", 2), "sites: 4 etcd members"),
    (
        "etcd majority in one of two sites",
        with_("sites.home.masters", 2, with_("sites.digitalocean.masters", 0)),
        "sites.home.masters: 2 of 3 etcd members in one site",
    ),
    (
        "one site holds a majority",
        with_("sites.home.masters", 3, with_("sites.ramnode.masters", 1)),
        "sites.home.masters: 3 of 5 etcd members in one site",
    ),
    (
        "no schedulable node",
        with_(
            "sites.ramnode.workers",
            0,
            with_("sites.home.workers", 0, with_("sites.digitalocean.workers", 0)),
        ),
        "no schedulable node",
    ),
    (
        "duplicate siteId",
        with_("sites.digitalocean.siteId", 1),
        "sites.digitalocean.siteId: 1 is already used by site 'ramnode'",
    ),
    (
        "siteId beyond the overlay",
        with_("sites.digitalocean.siteId", 300),
        "sites.digitalocean.siteId: 300 does not fit overlay",
    ),
    (
        "too many workers for the overlay",
        with_("sites.home.workers", 201),
        "sites.home.workers: at most 200",
    ),
    (
        "LAN overlapping the overlay",
        with_("sites.home.lanCidr", "10.147.0.0/24"),
        "sites.home.lanCidr: 10.147.0.0/24 overlaps overlayCidr",
    ),
    (
        "LAN that is the whole IPv6 internet",
        with_("sites.home.lanCidr", "::/0"),
        "sites.home.lanCidr: ::/0 is not a private range",
    ),
    (
        "LAN that is a public IPv4 range",
        with_("sites.home.lanCidr", "64.0.0.0/2"),
        "sites.home.lanCidr: 64.0.0.0/2 is not a private range",
    ),
    (
        "Central URL with user info hiding the host",
        with_("zerotierCentralUrl", "https://api.zerotier.com@evil.example.net/api/v1"),
        "zerotierCentralUrl: expected a plain https://<host>/<path> URL",
    ),
    (
        "Central URL on another port",
        with_("zerotierCentralUrl", "https://api.zerotier.com:8443/api/v1"),
        "zerotierCentralUrl: expected a plain https://<host>/<path> URL",
    ),
    (
        "cluster name with a trailing newline",
        with_("clusterName", "mc-prod\n"),
        "clusterName",
    ),
    (
        "SSH user with a trailing newline",
        with_("sshUser", "rke\n"),
        "sshUser",
    ),
    (
        "public ingress behind NAT",
        with_("sites.home.ingress", "public"),
        "sites.home.ingress: 'public' ingress needs a public address",
    ),
    (
        "public SSH without a public address",
        with_("sites.home.sshVia", "public"),
        "sites.home.sshVia: 'public' needs a public address",
    ),
    ("unknown sshVia", with_("sites.home.sshVia", "bastion"), "sites.home.sshVia"),
    (
        "service CIDR overlapping a LAN",
        with_("rke", {"serviceCidr": "192.168.50.0/24"}),
        "rke.serviceCidr",
    ),
    ("pod CIDR overlapping the overlay", with_("rke", {"podCidr": "10.147.0.0/16"}), "rke.podCidr"),
    (
        "more etcd members than the RKE state carries",
        with_(
            "sites.home.masters",
            3,
            with_("sites.ramnode.masters", 3, with_("sites.digitalocean.masters", 3)),
        ),
        "sites: 9 etcd members (one per master); at most 7",
    ),
    (
        "more nodes than the RKE state carries",
        _too_many_nodes(),
        "sites: 643 nodes in total; the RKE command carries at most 640",
    ),
    (
        "an S3 restore without S3",
        with_("rke", {"restore": {"snapshot": "rke_etcd_snapshot_1", "s3": True}}),
        "rke.restore: s3 is true but rke.etcd.s3 is not configured",
    ),
    (
        "a restore naming the .zip file",
        with_("rke", {"restore": {"snapshot": "rke_etcd_snapshot_1.zip"}}),
        "rke.restore.snapshot: snapshot: give the name without .zip",
    ),
    (
        "rebuild of an unknown node",
        with_("rebuild", ["mc-home-worker-9"]),
        "rebuild[0]: 'mc-home-worker-9' is not a node",
    ),
    (
        "rebuild of two etcd nodes at once",
        with_("rebuild", ["mc-home-master-0", "mc-ramnode-master-0"]),
        "rebuild one master at a time",
    ),
    (
        "cluster name not DNS-1123",
        with_("clusterName", "MC_prod"),
        "clusterName: expected a DNS-1123 label",
    ),
    ("no admin CIDRs", with_("adminCidrs", []), "adminCidrs"),
    ("no sites", with_("sites", {}), "sites"),
    ("boot volume too small", with_("sites.home.bootVolumeGb", 2), "sites.home.bootVolumeGb"),
    (
        "bad ZeroTier network id",
        with_("zerotierNetworkId", "8056C2E21C00000"),
        "zerotierNetworkId: expected 16 lower-case hex digits",
    ),
    ("root as SSH user", with_("sshUser", "root"), "sshUser"),
    (
        "updater without a record",
        with_("entrypoint", {"longhorn": {}}),
        "entrypoint: updater.enabled needs cloudflare",
    ),
    (
        "app without a host or record",
        with_("entrypoint", {"updater": {"enabled": False}}),
        "entrypoint: app.host is required",
    ),
    (
        "app host outside the record",
        with_(
            "entrypoint",
            {
                "cloudflare": {
                    "zoneId": "0" * 32,
                    "zone": "example.com",
                    "recordName": "k8s.example.com",
                },
                "app": {"host": "app.example.org"},
            },
        ),
        "does not resolve through cloudflare.recordName",
    ),
    # --- the network preflight and its checks (issue 10) ---
    (
        "ingress as a boolean",
        with_("sites.ramnode.ingress", True),
        "sites.ramnode.ingress: expected one of public | private | none",
    ),
    (
        "private ingress without a LAN range",
        with_("sites.digitalocean.ingress", "private"),
        "sites.digitalocean.ingress: 'private' opens 80/443 to the site's LAN only",
    ),
    (
        "SSH over the LAN of a site the deployer is not on",
        with_("deployer", {"lan": None}),
        "sites.home.sshVia: deployer -> nodes of site home on 22/tcp",
    ),
    (
        "deployer on an unknown site's LAN",
        with_("deployer", {"lan": "office"}),
        "deployer.lan: 'office' is not a site of this stack",
    ),
    (
        "deployer on a LAN without a range",
        with_("deployer", {"lan": "ramnode"}),
        "sites.ramnode.lanCidr: the deployer sits on this site's LAN",
    ),
    (
        "two private-SSH sites and no deployer",
        with_(
            "sites.digitalocean.sshVia",
            "private",
            with_("sites.digitalocean.lanCidr", "10.116.0.0/20"),
        ),
        "deployer.lan: sites home, digitalocean are all reached over SSH on LAN addresses",
    ),
    (
        "SSH over the overlay with RKE",
        with_("sites.home.sshVia", "overlay"),
        "sites.home.sshVia: 'overlay' makes the node's RKE address equal its internal",
    ),
    (
        "pod range on Docker's bridge",
        with_("rke", {"podCidr": "172.17.0.0/16"}),
        "rke.podCidr: 172.17.0.0/16 overlaps Docker's default bridge",
    ),
    (
        "overlay on Docker's bridge",
        with_("overlayCidr", "172.17.0.0/16"),
        "overlayCidr: 172.17.0.0/16 overlaps Docker's default bridge",
    ),
    (
        "overlay not private",
        with_("overlayCidr", "100.64.0.0/16"),
        "overlayCidr: 100.64.0.0/16 is not an RFC 1918 private range",
    ),
    (
        "service range not private",
        with_("rke", {"serviceCidr": "198.18.0.0/16"}),
        "rke.serviceCidr: 198.18.0.0/16 is not an RFC 1918 private range",
    ),
    (
        "LAN on Docker's bridge",
        with_("sites.home.lanCidr", "172.17.8.0/24"),
        "sites.home.lanCidr: 172.17.8.0/24 overlaps Docker's default bridge",
    ),
    (
        "DigitalOcean VPC overlapping the pod range",
        with_("sites.digitalocean.lanCidr", "10.42.0.0/20"),
        "rke.podCidr: 10.42.0.0/16 overlaps the VPC of site 'digitalocean'",
    ),
    (
        "DNS upstream inside the service range",
        with_("rke", {"dnsUpstreams": ["10.43.0.10"]}),
        "rke.dnsUpstreams[0]: 10.43.0.10 lies in serviceCidr",
    ),
    (
        "DNS upstream on one site's LAN",
        with_("rke", {"dnsUpstreams": ["1.1.1.1", "192.168.50.1"]}),
        "rke.dnsUpstreams[1]: 192.168.50.1 lies in the LAN of site 'home'",
    ),
    (
        "DNS upstream on link-local",
        with_("rke", {"dnsUpstreams": ["169.254.169.253"]}),
        "rke.dnsUpstreams[0]: 169.254.169.253 lies in link-local",
    ),
    (
        "admin CIDR opening the world",
        with_("adminCidrs", ["0.0.0.0/0"]),
        "adminCidrs[0]: 0.0.0.0/0 is wider than a /8",
    ),
    (
        "admin CIDR opening the IPv6 world",
        with_("adminCidrs", ["198.51.100.0/24", "::/0"]),
        "adminCidrs[1]: ::/0 is wider than a /32",
    ),
    (
        "admin CIDRs that add up to the world",
        with_("adminCidrs", ["0.0.0.0/1", "128.0.0.0/1"]),
        "adminCidrs[0]: 0.0.0.0/0 is wider than a /8",
    ),
    (
        "deployer sources opening the world",
        with_("deployer", {"lan": "home", "sourceCidrs": ["0.0.0.0/0"]}),
        "deployer.sourceCidrs[0]: 0.0.0.0/0 is wider than a /8",
    ),
    ("overlay MTU out of ZeroTier's range", with_("overlayMtu", 1000), "overlayMtu"),
    (
        "Longhorn replicas without nodes to hold them",
        with_(
            "entrypoint",
            {"updater": {"enabled": False}, "app": {"enabled": False}, "longhorn": {"replicas": 5}},
        ),
        "entrypoint.longhorn.replicas: 5 replicas need 5 schedulable (worker-role) nodes",
    ),
    (
        "an Ingress and RKE's ingress disabled",
        with_(
            "rke",
            {"ingress": {"enabled": False}},
            with_("entrypoint", {"updater": {"enabled": False}, "app": {"host": "app.home.lan"}}),
        ),
        "rke.ingress.enabled: entrypoint.app creates an Ingress",
    ),
    (
        "an Ingress and no node running the controller",
        with_(
            "sites.ramnode.ingress",
            "none",
            with_(
                "sites.digitalocean.ingress",
                "none",
                with_(
                    "entrypoint", {"updater": {"enabled": False}, "app": {"host": "app.home.lan"}}
                ),
            ),
        ),
        "entrypoint.app.enabled: the app's Ingress needs an ingress controller",
    ),
    (
        "a Cloudflare record and no public-ingress node",
        with_(
            "sites.ramnode.ingress",
            "none",
            with_("sites.digitalocean.ingress", "none", with_("entrypoint", CLOUDFLARE_ENTRYPOINT)),
        ),
        "entrypoint.cloudflare: the Cloudflare record and the DNS updater need a public-ingress",
    ),
    (
        "ACME HTTP-01 for a host without a public record",
        with_(
            "entrypoint",
            {
                "updater": {"enabled": False},
                "certManager": {"enabled": True, "email": "ops@example.com"},
                "app": {"host": "app.home.lan"},
            },
        ),
        "entrypoint.certManager.enabled: Let's Encrypt's HTTP-01 check connects to app.home.lan",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(raw, exp) for _, raw, exp in BAD], ids=[b[0] for b in BAD]
)
def test_bad_config_names_the_key(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_stack(raw)
    assert expected in str(err.value)
    assert "multicloud:" in str(err.value)


def test_bad_config_table_is_large_and_distinct() -> None:
    assert len(BAD) >= 20 + 12
    assert len({json.dumps(raw, sort_keys=True) for _, raw, _ in BAD}) == len(BAD)


def test_masters_schedulable_gives_masters_the_worker_role() -> None:
    raw = base()
    for site in raw["sites"].values():
        site["workers"] = 0
    raw["mastersSchedulable"] = True
    config = check_stack(raw)[0]
    assert all(n.roles == ("controlplane", "etcd", "worker") for n in config.nodes)
    assert [n.name for n in config.nodes if n.public_ingress] == [
        "mc-ramnode-master-0",
        "mc-digitalocean-master-0",
    ]


def test_scaling_never_moves_an_address() -> None:
    before = {n.name: n.zerotier_ip for n in check_stack(base())[0].nodes}
    bigger = with_("sites.home.workers", 5)
    bigger["sites"]["edge"] = {
        "kind": "digitalocean",
        "siteId": 4,
        "region": "fra1",
        "size": "s-1vcpu-2gb",
        "image": "debian-12-x64",
        "workers": 1,
    }
    after = {n.name: n.zerotier_ip for n in check_stack(bigger)[0].nodes}
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == len(after)
    overlay = ipaddress.IPv4Network("10.147.0.0/16")
    assert all(ipaddress.IPv4Address(ip) in overlay for ip in after.values())


@pytest.mark.parametrize("kind", ["master", "worker"])
def test_addresses_are_unique_across_sites_kinds_and_indexes(kind: str) -> None:
    overlay = ipaddress.IPv4Network("10.147.0.0/22")
    seen = set()
    for site_id in (1, 2, 3):
        for k in ("master", "worker"):
            for index in range(3):
                seen.add(overlay_address(overlay, site_id, k, index))  # type: ignore[arg-type]
    assert len(seen) == 18
    with pytest.raises(ValueError, match=r"siteId 4 is outside 1\.\.3"):
        overlay_address(overlay, 4, kind, 0)  # type: ignore[arg-type]


def test_kubernetes_versions_are_the_ones_rke_ships() -> None:
    from components.config import ClusterSettings
    from rke.config_rules import DEFAULT_KUBERNETES_VERSION, KUBERNETES_VERSIONS
    from tests.support import reference

    data = reference.load("rke-releases.json")
    latest = data["releases"][data["latest"]]
    assert set(KUBERNETES_VERSIONS) == set(latest["kubernetes_versions"])
    # the default is the one not behind RKE's extended-life subscription
    assert DEFAULT_KUBERNETES_VERSION in latest["kubernetes_versions"]
    assert DEFAULT_KUBERNETES_VERSION not in latest["extended_life_only"]
    # the key's description (docs/config-reference.md) names the same default
    description = ClusterSettings.model_fields["kubernetes_version"].description
    assert f"({DEFAULT_KUBERNETES_VERSION} for rke" in (description or "")


def test_every_engine_the_config_accepts_hands_in_its_rules() -> None:
    import typing

    from components.config import ClusterSettings
    from engines import ENGINES

    engine = ClusterSettings.model_fields["engine"].annotation
    assert set(ENGINES) == set(typing.get_args(engine))


def test_the_largest_accepted_cluster_is_three_sites_of_two_hundred_workers() -> None:
    raw = _too_many_nodes()
    del raw["sites"]["extra"]
    assert len(check_stack(raw)[0].nodes) == 603


def test_secret_keys_are_declared_or_checked_by_the_program() -> None:
    """Declared secrets are refused in plaintext by the CLI; the rest by load_config."""
    import yaml

    from components.config import CONDITIONAL_SECRETS, DECLARED_SECRETS
    from scripts.offline import ROOT

    schema = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    declared_secret = {key for key, value in schema.items() if value.get("secret")}
    assert declared_secret == set(DECLARED_SECRETS)
    for key in DECLARED_SECRETS:
        assert "default" not in schema[key]  # a secret key with a plaintext default is refused
    assert not set(CONDITIONAL_SECRETS) & set(schema)
