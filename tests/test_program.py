"""The whole program under mocks: what `pulumi up` would register, and how it changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.boot.overlay import ZEROTIER_HOME
from components.sites.firewall import Rule, cloudflare_origin_ranges, ethertype
from scripts.offline import (
    PLACEHOLDER,
    UNKNOWN,
    Run,
    is_secret,
    reveal,
    run_program,
    stack_config,
)
from tests.components.boot.test_cloud_init import validate_user_data
from tests.support.program_runs import (
    CANARIES,
    RKE_COMMAND,
    changed_inputs,
    committed,
    edited,
    plaintext,
    run_edited,
    vms,
)

STACKS = ("home", "prod")
IDENTITY = "-zt-identity"
MEMBER = "-zt-member"


def dynamic(run: Run, suffix: str) -> dict[str, Any]:
    return {
        r.name.removesuffix(suffix): r
        for r in run.registrations
        if r.type.startswith("pulumi-python:dynamic") and r.name.endswith(suffix)
    }


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_evaluate(stack: str, preview: bool) -> None:
    run = committed(stack, preview)
    assert vms(run)
    assert len(run.of_type(RKE_COMMAND)) == 1
    if preview:  # a first preview: nothing exists, every cloud-decided value is unknown
        assert all(reveal(vm.inputs["userData"]) == UNKNOWN for vm in vms(run))
        [command] = run.of_type(RKE_COMMAND)
        assert reveal(command.inputs.get("stdin", UNKNOWN)) == UNKNOWN


@pytest.mark.parametrize("stack", STACKS)
def test_resource_counts_follow_config(stack: str) -> None:
    run = committed(stack)
    config, _ = stack_config(stack)
    sites = json.loads(config["multicloud:sites"])
    for name, site in sites.items():
        site_vms = [v for v in vms(run) if v.name.startswith(f"mc-{stack}-{name}-")]
        assert len(site_vms) == site["masters"] + site["workers"], name
        assert all(v.parent.endswith(f"::{name}") for v in site_vms)
    total = sum(s["masters"] + s["workers"] for s in sites.values())
    assert len(dynamic(run, IDENTITY)) == len(dynamic(run, MEMBER)) == total
    assert len([r for r in run.registrations if r.name.endswith("-ready")]) == total


def test_each_site_uses_its_own_provider() -> None:
    run = committed("prod")
    providers = {r.urn: r for r in run.registrations if r.type.startswith("pulumi:providers:")}
    used: dict[str, set[str]] = {}
    for vm in vms(run):
        provider_urn = vm.provider.rsplit("::", 1)[0]  # a provider reference is "<urn>::<id>"
        assert provider_urn in providers
        used.setdefault(vm.parent.rsplit("::", 1)[-1], set()).add(provider_urn)
    assert set(used) == {"ramnode", "home", "digitalocean"}
    assert all(len(urns) == 1 for urns in used.values())
    assert len(set().union(*used.values())) == 3
    openstack = [p for p in providers.values() if p.type == "pulumi:providers:openstack"]
    assert sorted(reveal(p.inputs)["cloud"] for p in openstack) == ["home", "ramnode"]


def _firewall(run: Run) -> dict[str, set[tuple[str, int, str]]]:
    """Group name -> {(protocol, port, source)} for both clouds. An OpenStack rule from an
    address group stands for each of the group's addresses of the rule's ethertype."""
    groups: dict[str, set[tuple[str, int, str]]] = {}
    address_groups = {
        f"{g.name}-id": reveal(g.inputs)["addresses"]
        for g in run.of_type("openstack:networking/addressGroupV2:AddressGroupV2")
    }
    for rule in run.of_type("openstack:networking/secGroupRule:SecGroupRule"):
        inputs = reveal(rule.inputs)
        assert inputs["direction"] == "ingress" and inputs["portRangeMin"] == inputs["portRangeMax"]
        group = rule.parent.rsplit("::", 1)[-1]
        if "remoteAddressGroupId" in inputs:
            assert "remoteIpPrefix" not in inputs
            sources = [
                a
                for a in address_groups[inputs["remoteAddressGroupId"]]
                if ethertype(a) == inputs["ethertype"]
            ]
        else:
            assert ethertype(inputs["remoteIpPrefix"]) == inputs["ethertype"]
            sources = [inputs["remoteIpPrefix"]]
        groups.setdefault(group, set()).update(
            (inputs["protocol"], int(inputs["portRangeMin"]), source) for source in sources
        )
    for fw in run.of_type("digitalocean:index/firewall:Firewall"):
        inputs = reveal(fw.inputs)
        for rule in inputs.get("inboundRules", []):
            for source in rule["sourceAddresses"]:
                groups.setdefault(fw.name, set()).add(
                    (rule["protocol"], int(rule["portRange"]), source)
                )
    return groups


def test_firewall_is_exactly_the_policy() -> None:
    """Public sites: SSH/API from the admins (= the deployer's public sources by default);
    home (behind NAT, reached on its LAN by the deployer): SSH/API and 80/443 from the LAN."""
    run = committed("prod")
    admins = json.loads(stack_config("prod")[0]["multicloud:adminCidrs"])
    lan = "192.168.50.0/24"
    anywhere = ("0.0.0.0/0", "::/0")
    zerotier = {("udp", 9993, a) for a in anywhere}
    public = {
        "node": {("tcp", 22, a) for a in admins} | zerotier,
        "api": {("tcp", 6443, a) for a in admins},
        # prod's record is proxied: 80/443 from Cloudflare's published ranges only
        "ingress": {("tcp", p, a) for p in (80, 443) for a in cloudflare_origin_ranges()},
    }
    expected = {
        "ramnode": public,
        "digitalocean": public,
        "home": {
            "node": {("tcp", 22, lan)} | zerotier,
            "api": {("tcp", 6443, lan)},
            "lan-ingress": {("tcp", 80, lan), ("tcp", 443, lan)},
        },
    }
    groups = _firewall(run)
    assert {name: set(expected[name]) for name in expected} == {
        site: {g.split("-", 1)[1] for g in groups if g.startswith(f"{site}-")} for site in expected
    }
    for name, rules in groups.items():
        site, group = name.split("-", 1)
        assert rules == expected[site][group], name
    # what is registered is what the preflight checked
    from components.config import raw_values
    from engines import check_stack

    checked = check_stack(raw_values(stack_config("prod")[0]))[1].firewall
    for site, policy in checked.items():
        for group, group_rules in policy.groups.items():
            assert groups[f"{site}-{group}"] == {
                (r.protocol, r.port, src) for r in group_rules for src in r.sources
            }
    everything = set().union(*groups.values())
    world = {r for r in everything if r[2] in anywhere}
    assert {port for _, port, _ in world} == {9993}  # no 22, 6443, 80/443, etcd, kubelet, VXLAN
    # DigitalOcean firewalls select droplets by tag, never by droplet id.
    for fw in run.of_type("digitalocean:index/firewall:Firewall"):
        inputs = reveal(fw.inputs)
        assert inputs["tags"] and not inputs.get("dropletIds")


def _reaches(run: Run, node: str, port: int, source: str) -> bool:
    """Whether the rendered firewall lets a TCP connection from ``source`` to ``port`` on
    VM ``node``: the node's OpenStack security groups (its port's securityGroupIds) or
    DigitalOcean firewalls (by the droplet's tags), each allowing what any rule of it
    allows, matched as ``firewall.Rule.admits`` matches (the source inside a rule's CIDR)."""
    groups = _firewall(run)
    ports = {r.name: reveal(r.inputs) for r in run.of_type("openstack:networking/port:Port")}
    if f"{node}-port" in ports:
        member = [g.removesuffix("-id") for g in ports[f"{node}-port"]["securityGroupIds"]]
    else:
        [droplet] = [d for d in run.of_type("digitalocean:index/droplet:Droplet") if d.name == node]
        tags = set(reveal(droplet.inputs)["tags"])
        member = [
            fw.name
            for fw in run.of_type("digitalocean:index/firewall:Firewall")
            if tags & set(reveal(fw.inputs)["tags"])
        ]
    return any(
        Rule(protocol, rule_port, (allowed,), "").admits("tcp", port, f"{source}/32")
        for group in member
        for protocol, rule_port, allowed in groups.get(group, ())
    )


CLOUDFLARE_EDGE = "104.16.0.1"  # inside 104.16.0.0/13, one of Cloudflare's published ranges
ELSEWHERE = "192.0.2.77"  # in none of Cloudflare's ranges nor prod's adminCidrs
ADMIN = "198.51.100.77"  # inside prod's adminCidrs (198.51.100.0/24)
PUBLIC_INGRESS = ("mc-prod-ramnode-worker-0", "mc-prod-digitalocean-worker-0")


def _unproxied(values: dict[str, Any]) -> None:
    cloudflare = values["multicloud:entrypoint"]["cloudflare"]
    cloudflare["proxied"] = False
    cloudflare.pop("edgePropagationSeconds", None)  # unproxied, the DNS TTL counts instead
    cloudflare["ttl"] = 60
    values["multicloud:entrypoint"]["failoverBoundSeconds"] = 300


def test_a_proxied_origin_answers_cloudflare_only() -> None:
    """prod's record is proxied: on both clouds a public-ingress node takes 80/443 from an
    address of Cloudflare's and from no other (a client elsewhere cannot bypass the proxy
    by the node's address); SSH from the admins is untouched. Unproxied, both reach it."""
    proxied = committed("prod")
    for node in PUBLIC_INGRESS:
        for port in (80, 443):
            assert _reaches(proxied, node, port, CLOUDFLARE_EDGE), (node, port)
            assert not _reaches(proxied, node, port, ELSEWHERE), (node, port)
        assert _reaches(proxied, node, 22, ADMIN) and not _reaches(proxied, node, 443, ADMIN)
    # the LAN ingress at home is unaffected
    assert _reaches(proxied, "mc-prod-home-worker-0", 443, "192.168.50.9")
    assert not _reaches(proxied, "mc-prod-home-worker-0", 443, CLOUDFLARE_EDGE)
    direct = run_edited("prod", _unproxied)
    assert direct.error is None, direct.error
    for node in PUBLIC_INGRESS:
        for source in (CLOUDFLARE_EDGE, ELSEWHERE):
            assert _reaches(direct, node, 443, source), (node, source)


def test_address_groups_take_one_rule_per_port_with_the_same_reach() -> None:
    """sites.ramnode.addressGroups: Cloudflare's ranges become one Neutron address group and
    the ingress group one rule per port; what reaches the node is unchanged, and the rules
    registered are the ones the preflight's quota check counts."""
    from components.config import raw_values
    from components.sites.firewall import neutron_rule_count
    from engines import check_stack

    def grouped(values: dict[str, Any]) -> None:
        values["multicloud:sites"]["ramnode"]["addressGroups"] = True

    run = run_edited("prod", grouped)
    assert run.error is None, run.error
    [group] = run.of_type("openstack:networking/addressGroupV2:AddressGroupV2")
    assert sorted(reveal(group.inputs)["addresses"]) == sorted(cloudflare_origin_ranges())
    rules = run.of_type("openstack:networking/secGroupRule:SecGroupRule")
    ingress = [r for r in rules if r.parent.endswith("::ramnode-ingress")]
    assert len(ingress) == 2
    assert _reaches(run, "mc-prod-ramnode-worker-0", 443, CLOUDFLARE_EDGE)
    assert not _reaches(run, "mc-prod-ramnode-worker-0", 443, ELSEWHERE)
    plan = check_stack(raw_values(edited("prod", grouped)[0]))[1]
    for site, address_groups in (("ramnode", True), ("home", False)):
        registered = [r for r in rules if r.parent.rsplit("::", 1)[-1].startswith(f"{site}-")]
        groups = plan.firewall[site].groups
        assert neutron_rule_count(plan.firewall[site], address_groups) == (
            len(registered) + 2 * len(groups) + 4
        )


def test_digitalocean_firewalls_stay_within_their_limits() -> None:
    """DigitalOcean: at most 50 rules per firewall and 1000 sources per rule
    (docs.digitalocean.com/products/networking/firewalls/details/limits)."""
    for fw in committed("prod").of_type("digitalocean:index/firewall:Firewall"):
        inputs = reveal(fw.inputs)
        rules = [*inputs.get("inboundRules", []), *inputs.get("outboundRules", [])]
        assert len(rules) <= 50
        for rule in rules:
            assert len(rule.get("sourceAddresses", rule.get("destinationAddresses", []))) <= 1000


def test_ingress_ports_only_on_ingress_nodes() -> None:
    run = committed("prod")
    ports = {
        r.name.removesuffix("-port"): reveal(r.inputs)
        for r in run.of_type("openstack:networking/port:Port")
    }
    group_ids = {r.name: r.urn for r in run.of_type("openstack:networking/secGroup:SecGroup")}
    assert group_ids
    for name, port in ports.items():
        groups = {g.removesuffix("-id") for g in port["securityGroupIds"]}
        assert ("ramnode-ingress" in groups) == ("ramnode-worker" in name), name
        assert ("home-lan-ingress" in groups) == ("home-worker" in name), name
    for droplet in run.of_type("digitalocean:index/droplet:Droplet"):
        tags = reveal(droplet.inputs)["tags"]
        assert ("mc-prod-digitalocean-ingress" in tags) == droplet.name.endswith("worker-0")
        assert ("mc-prod-digitalocean-api" in tags) == ("master" in droplet.name)


# Scaling and rebuilding run through the real engine instead (tests/engine/, `make engine`):
# test_program_scale.py's test_scaling_workers_out_and_in (prod, RKE and RKE2: the +1 preview
# creates exactly the new node's resources and updates only the cluster command, so no
# existing registration, identity or member changes; the -1 preview deletes exactly those,
# the highest index) and test_program_rebuild.py (a new image on the sites and `rebuild` of
# one node: that VM alone is replaced, every other VM keeps its boot inputs ignored).


def test_template_change_replaces_no_vm_and_leaves_rke_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rke.boot as rke_boot

    before = committed("prod")
    monkeypatch.setattr(rke_boot, "DOCKER_VERSION", "5:27.0.3-1~debian.12~bookworm")
    after = run_edited("prod", lambda values: None)
    changes = changed_inputs(before, after)
    assert changes and all(keys == ["userData"] for keys in changes.values())
    for vm in vms(after):
        assert "userData" in vm.ignore_changes  # the engine keeps the booted user-data
    assert not [u for u in changes if u.endswith("::cluster-rke-up")]


def test_cluster_yml_never_reaches_triggers() -> None:
    for run in (committed("prod"), committed("prod", True)):
        [command] = run.of_type(RKE_COMMAND)
        assert "triggers" not in command.inputs
        assert "stdin" in command.inputs
        assert command.additional_secret_outputs == ["stdout", "stderr"]


def test_rke_waits_for_every_gate_and_gates_wait_for_vm_and_member() -> None:
    run = committed("prod")
    [command] = run.of_type(RKE_COMMAND)
    gates = {
        r.name.removesuffix("-ready"): r for r in run.registrations if r.name.endswith("-ready")
    }
    assert {g.urn for g in gates.values()} <= set(command.dependencies)
    urns = {r.name: r.urn for r in run.registrations}
    for node, gate in gates.items():
        assert urns[node] in gate.dependencies
        assert urns[f"{node}{MEMBER}"] in gate.dependencies


def test_members_have_the_node_overlay_address_and_follow_the_network() -> None:
    run = committed("prod")
    network = next(r for r in run.registrations if r.name == "overlay-network")
    table = {row["name"]: row for row in reveal(run.outputs["nodes"])}
    members = dynamic(run, MEMBER)
    identities = dynamic(run, IDENTITY)
    assert set(members) == set(identities) == set(table)
    for node, member in members.items():
        inputs = reveal(member.inputs)
        assert inputs["ip"] == table[node]["overlayIp"]
        assert network.urn in member.dependencies
        assert is_secret(member.inputs["token"])
        assert identities[node].urn in member.property_dependencies["node_id"]


def test_user_data_carries_its_own_identity_only_and_is_secret() -> None:
    run = committed("prod")
    secrets = {}
    for vm in vms(run):
        assert is_secret(vm.inputs["userData"]), vm.name
        doc = yaml.safe_load(reveal(vm.inputs["userData"]))
        files = {f["path"]: f["content"] for f in doc["write_files"]}
        secrets[vm.name] = files[f"{ZEROTIER_HOME}/identity.secret"].strip()
    assert len(set(secrets.values())) == len(secrets)
    for vm in vms(run):
        text = reveal(vm.inputs["userData"])
        others = [s for n, s in secrets.items() if n != vm.name]
        assert secrets[vm.name] in text and not any(o in text for o in others)


def test_canary_secrets_never_appear_in_plaintext() -> None:
    canaries = CANARIES
    config, _ = stack_config("prod")
    config |= {f"multicloud:{k}": v for k, v in canaries.items()}
    run = run_program(config, secret_keys=[f"multicloud:{k}" for k in canaries], stack="prod")
    assert run.error is None, run.error

    seen_somewhere = set()
    for reg in run.registrations:
        text = plaintext(reg.inputs)
        for canary in canaries.values():
            assert canary not in text, (reg.name, canary)
        seen_somewhere |= {c for c in canaries.values() if c in json.dumps(reveal(reg.inputs))}
    assert seen_somewhere == set(canaries.values())  # every canary was really used
    assert canaries["sshPrivateKey"] not in plaintext(run.outputs)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("multicloud:zerotierToken", None, "multicloud:zerotierToken: missing"),
        (
            "multicloud:digitaloceanToken",
            None,
            "multicloud:digitaloceanToken: missing; site 'digitalocean'",
        ),
        ("multicloud:sitez", "{}", "multicloud:sitez: unknown key"),
        # the network preflight: a deployer on no LAN cannot reach home's LAN addresses
        ("multicloud:deployer", '{"overlay": true}', "multicloud:sites.home.sshVia: deployer"),
    ],
)
def test_bad_stack_config_stops_before_any_resource(
    key: str, value: str | None, message: str
) -> None:
    import pulumi

    config, secrets = stack_config("prod")
    if value is None:
        config.pop(key)
    else:
        config[key] = value
    run = run_program(config, secret_keys=secrets, stack="prod")
    assert isinstance(run.error, pulumi.RunError)
    assert message in str(run.error)
    assert run.registrations == []


def test_plaintext_secret_is_refused() -> None:
    import pulumi

    config, secrets = stack_config("prod")
    secrets.remove("multicloud:digitaloceanToken")
    run = run_program(config, secret_keys=secrets, stack="prod")
    assert isinstance(run.error, pulumi.RunError)
    assert "digitaloceanToken: stored in plaintext" in str(run.error)
    assert run.registrations == []


def test_duplicate_site_is_refused() -> None:
    import pulumi

    config, secrets = stack_config("home")
    text = config["multicloud:sites"]
    config["multicloud:sites"] = text[:-1] + ", " + text[1:]  # the same site twice
    run = run_program(config, secret_keys=secrets, stack="home")
    assert isinstance(run.error, pulumi.RunError)
    assert "duplicate key 'home'" in str(run.error)


def test_prod_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    run = committed("prod")
    picks = [v for v in vms(run) if v.name.endswith(("ramnode-master-0", "digitalocean-worker-0"))]
    paths = []
    for vm in picks:
        path = tmp_path / f"{vm.name}.yaml"
        path.write_text(reveal(vm.inputs["userData"]))
        paths.append(path)
    for verdict in validate_user_data(paths):
        assert verdict.valid and not verdict.mirror.deprecations, verdict.why()


def test_placeholders_stay_secret_in_render() -> None:
    run = committed("prod")
    for reg in run.registrations:
        text = json.dumps(reg.inputs)
        if PLACEHOLDER in text:
            assert PLACEHOLDER not in json.dumps(_plain_only(reg.inputs)), reg.name


def _plain_only(value: Any) -> Any:
    if is_secret(value):
        return None
    if isinstance(value, dict):
        return {k: _plain_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_only(v) for v in value]
    return value


def test_home_runs_services_without_a_public_record() -> None:
    run = committed("home")
    types = {r.type for r in run.registrations}
    assert not [t for t in types if t.startswith(("cloudflare:", "pulumi:providers:cloudflare"))]
    assert "kubernetes:helm.sh/v3:Release" in types  # Longhorn
    names = {r.name for r in run.registrations}
    assert not [n for n in names if "updater" in n or "ddns" in n]
    assert "recordName" not in run.outputs and run.outputs["appUrl"] == "http://app.home.lan/"


def test_home_ingress_controller_runs_on_the_lan_workers() -> None:
    """An Ingress exists only when RKE's controller can run, and it runs on the home
    workers, reachable on 80/443 from the LAN only."""
    import pulumi

    run = committed("home")
    [command] = run.of_type(RKE_COMMAND)
    doc = yaml.safe_load(reveal(command.inputs["stdin"]))
    selector = doc["ingress"]["node_selector"]
    # ingress-nginx's DaemonSet needs the worker role too (its nodeAffinity), the admission
    # Jobs only the node_selector: both land on the same nodes here
    runs = [
        n["hostname_override"]
        for n in doc["nodes"]
        if "worker" in n["role"] and all(n["labels"].get(k) == v for k, v in selector.items())
    ]
    assert runs == ["mc-home-home-worker-0", "mc-home-home-worker-1"]
    assert len(run.of_type("kubernetes:networking.k8s.io/v1:Ingress")) == 1
    ports = {
        r.name.removesuffix("-port"): {
            g.removesuffix("-id") for g in reveal(r.inputs)["securityGroupIds"]
        }
        for r in run.of_type("openstack:networking/port:Port")
    }
    assert {name for name, groups in ports.items() if "home-lan-ingress" in groups} == set(runs)
    lan_rules = {
        (reveal(r.inputs)["portRangeMin"], reveal(r.inputs)["remoteIpPrefix"])
        for r in run.of_type("openstack:networking/secGroupRule:SecGroupRule")
        if r.parent.endswith("::home-lan-ingress")
    }
    assert lan_rules == {(80, "192.168.50.0/24"), (443, "192.168.50.0/24")}

    def no_controller(values: dict[str, Any]) -> None:
        values["multicloud:sites"]["home"]["ingress"] = "none"

    refused = run_edited("home", no_controller)
    assert isinstance(refused.error, pulumi.RunError)
    assert "multicloud:sites.home.ingress: private" in str(refused.error)
    assert refused.registrations == []

    def no_controller_no_app(values: dict[str, Any]) -> None:
        no_controller(values)
        values["multicloud:entrypoint"]["app"] = {"enabled": False}

    quiet = run_edited("home", no_controller_no_app)
    assert quiet.error is None, quiet.error
    assert not quiet.of_type("kubernetes:networking.k8s.io/v1:Ingress")


def test_longhorn_counts_only_zones_with_workers(caplog: pytest.LogCaptureFixture) -> None:
    """prod with digitalocean's workers at 0: two zones can hold replicas, so the default is
    2 replicas with hard zone anti-affinity (it was 3 over three sites, never satisfiable)."""

    def edit(values: dict[str, Any]) -> None:
        values["multicloud:sites"]["digitalocean"]["workers"] = 0
        del values["multicloud:entrypoint"]["longhorn"]["replicas"]
        # ramnode is then the only site that can run the DNS updater: accept that a dead
        # ramnode takes the entrypoint with it (the failover bound refuses it otherwise)
        values["multicloud:entrypoint"]["failoverBoundSeconds"] = None

    run = run_edited("prod", edit)
    assert run.error is None, run.error
    [longhorn] = [
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.name.endswith("-longhorn")
    ]
    defaults = reveal(longhorn.inputs)["values"]["defaultSettings"]
    assert (defaults["defaultReplicaCount"], defaults["replicaZoneSoftAntiAffinity"]) == (2, False)
    # the preflight's warnings reach the person running `pulumi up` (pulumi.log.warn; the
    # mock engine hands them to Python's logging)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warned if w.startswith("network preflight: ")] == [
        "network preflight: multicloud:sites.digitalocean.ingress: sites.digitalocean.ingress "
        "is 'public' but the site has no worker-role node: nothing there runs the ingress "
        "controller"
    ]


def test_edited_helper_round_trips() -> None:
    config, _ = edited("home", lambda values: None)
    assert json.loads(config["multicloud:sites"]) == json.loads(
        stack_config("home")[0]["multicloud:sites"]
    )


def test_readme_shows_the_rendered_prod_diagram_and_failover_bound() -> None:
    from components.config import raw_values, stack_failover_budget
    from components.diagram import architecture_mermaid
    from engines import check_stack
    from scripts.offline import ROOT

    parsed = check_stack(raw_values(stack_config("prod")[0]))[0]
    readme = (ROOT / "README.md").read_text()
    assert f"```mermaid\n{architecture_mermaid(parsed)}```" in readme
    assert f"worst case of **{stack_failover_budget(parsed).total} s**" in readme


def test_render_writes_the_build_and_refuses_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import scripts.render as render

    assert render.main(["--stack", "home", "--out", str(tmp_path)]) == 0
    out = tmp_path / "home"
    assert "mc-home-home-worker-1" in (out / "nodes.md").read_text()
    assert "canal_iface: zt" in (out / "cluster.yml").read_text()
    from components.config import raw_values
    from components.diagram import architecture_mermaid
    from engines import check_stack

    # the README's diagram is this function's output for prod: the file is exactly it
    parsed = check_stack(raw_values(stack_config("home")[0]))[0]
    assert (out / "architecture.mmd").read_text() == architecture_mermaid(parsed)
    reachability = (out / "reachability.md").read_text()
    assert reachability.startswith("# Reachability: stack home")
    assert "| path | from | to | port | verdict | note |" in reachability
    assert "| lan-ingress | LAN of home (192.168.50.0/24) | mc-home-home-worker-1" in reachability
    assert reachability in capsys.readouterr().out  # printed too
    assert len(list((out / "user-data").glob("*.yaml"))) == 3
    resources = json.loads((out / "resources.json").read_text())
    assert PLACEHOLDER not in json.dumps(resources)  # secrets are masked

    def typo(values: dict[str, Any]) -> None:
        values["multicloud:sites"]["home"]["worker"] = 3

    monkeypatch.setattr(render, "stack_config", lambda stack: edited("home", typo))
    capsys.readouterr()
    assert render.main(["--stack", "home", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "multicloud:sites.home.worker: unknown key" in err and "Traceback" not in err


def test_resources_json_does_not_depend_on_registration_order() -> None:
    # Registrations arrive as outputs resolve; a reviewer diffs resources.json between two
    # commits, so the same program must give the same file whatever the order.
    import dataclasses

    from scripts.render import resources_json

    run = committed("prod")
    shuffled = dataclasses.replace(run, registrations=list(reversed(run.registrations)))
    text = resources_json(run)
    assert resources_json(shuffled) == text
    assert len(json.loads(text)) == len(run.registrations)


def test_adopted_network_joins_nodes_to_that_network() -> None:
    nwid = "8056c2e21c000001"

    def adopt(values: dict[str, Any]) -> None:
        values["multicloud:zerotierNetworkId"] = nwid
        values["multicloud:overlayMtu"] = "1400"  # as `pulumi config set overlayMtu 1400` stores it

    run = run_edited("home", adopt)
    assert run.error is None
    network = reveal(run.by_name["overlay-network"].inputs)
    assert (network["adopt_network_id"], network["mtu"]) == (nwid, 1400)
    # unset, the adopted network's own MTU is left alone (components/overlay/zerotier)
    assert "mtu" not in reveal(committed("home").by_name["overlay-network"].inputs)
    for vm in vms(run):
        doc = yaml.safe_load(reveal(vm.inputs["userData"]))
        assert f"{ZEROTIER_HOME}/networks.d/{nwid}.conf" in [f["path"] for f in doc["write_files"]]
    [command] = run.of_type(RKE_COMMAND)
    # the interface name comes from the network id (reference vector: ztmjfmfyq5)
    assert "canal_iface: ztmjfmfyq5" in reveal(command.inputs["stdin"])
