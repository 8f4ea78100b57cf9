"""The whole program with ``engine: rke2`` (the committed stack files keep rke).

Few whole-program runs, all cached: each committed stack once (with canary secrets), prod
once more with a worker and a site added, and prod as a first preview.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.config import raw_values
from engines import check_stack
from rke2 import config_yaml, release
from rke2.component import RECORD_OUTPUT
from scripts.cloud_config_schema import validate_cloud_config_file
from scripts.offline import PLACEHOLDER, UNKNOWN, Registration, Run, is_secret, reveal, run_program
from scripts.render import write
from tests.support.program_runs import (
    CANARIES,
    by_urn,
    changed_inputs,
    committed_rke2,
    plaintext,
    rke2_config,
    vms,
)
from tests.support.reference import REFERENCE
from tests.support.tools import debian_tool, load_yaml

STACKS = ("home", "prod")
MINOR = release.kubernetes_minor(release.pinned_version())
TOKEN = f"{PLACEHOLDER}-rke2-token"  # the mocked pulumi_random result: a canary too
AGENT_TOKEN = f"{PLACEHOLDER}-rke2-agent-token"
READY = "command:remote:Command"


def user_data(vm: Registration) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(str(reveal(vm.inputs["userData"])))
    return document


def files(vm: Registration) -> dict[str, str]:
    return {f["path"]: f["content"] for f in user_data(vm)["write_files"]}


def rke2_configs(run: Run) -> dict[str, dict[str, Any]]:
    return {vm.name: yaml.safe_load(files(vm)[config_yaml.CONFIG_PATH]) for vm in vms(run)}


def ready_command(run: Run) -> Registration:
    [command] = [r for r in run.of_type(READY) if r.name.endswith("-nodes-ready")]
    return command


def cloud_init_schema_batch(paths: list[Path]) -> str:
    """Debian's cloud-init schema validator (what `cloud-init schema -c` runs,
    ``validate_cloudconfig_file``) over many files in ONE process: errors, or ''.

    Without the binary (optional outside CI, README's prerequisites) the vendored 22.4.2
    schema applied as `cloud-init schema` applies it (scripts/cloud_config_schema.py)."""
    binary = debian_tool("cloud-init", "cloud-init")
    if binary is None:
        results = {path: validate_cloud_config_file(path) for path in paths}
        return "".join(f"{path} {r.report()}\n" for path, r in results.items() if not r.valid)
    interpreter = Path(binary).read_text().splitlines()[0].removeprefix("#!").split()[0]
    program = (
        "import sys\n"
        "from cloudinit.config.schema import get_schema, validate_cloudconfig_file\n"
        "schema = get_schema()\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        validate_cloudconfig_file(path, schema)\n"
        "    except Exception as err:\n"
        "        print(path, err)\n"
    )
    result = subprocess.run(
        [interpreter, "-c", program, *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    return result.stdout + (result.stderr if result.returncode else "")


def test_every_user_data_validates_and_installs_rke2_not_docker(tmp_path: Path) -> None:
    paths = []
    for stack in STACKS:
        for vm in vms(committed_rke2(stack)):
            path = tmp_path / f"{vm.name}.yaml"
            path.write_text(str(reveal(vm.inputs["userData"])))
            paths.append(path)
    broken = tmp_path / "broken.yaml"  # proves the validator is really validating
    broken.write_text(
        paths[0].read_text().replace("ssh_authorized_keys:", "ssh_authorized_keys: 7\n  x:")
    )
    assert cloud_init_schema_batch(paths) == ""
    assert "broken.yaml" in cloud_init_schema_batch([broken])
    for stack in STACKS:
        for vm in vms(committed_rke2(stack)):
            document, written = user_data(vm), files(vm)
            bootstrap = written["/usr/local/sbin/multicloud-bootstrap"]
            assert "docker" not in bootstrap and "/etc/docker/daemon.json" not in written
            assert "docker" not in json.dumps(document.get("groups", []))
            assert "docker" not in json.dumps(document["users"])
            assert {"open-iscsi", "nfs-common"} <= set(bootstrap.split())  # Longhorn
            # ZeroTier first: identity on disk, zerotier-one up, then RKE2.
            assert bootstrap.index("zerotier-one") < bootstrap.index("multicloud-rke2-install")
            install = written["/usr/local/sbin/multicloud-rke2-install"]
            assert release.pinned_version() in install and "sha256" in install
            assert written[config_yaml.CONFIG_PATH] and "permissions" in str(document)


@pytest.mark.parametrize("stack", STACKS)
def test_configs_use_the_overlay_and_exactly_one_server_initializes(stack: str) -> None:
    run = committed_rke2(stack)
    parsed = check_stack(raw_values(rke2_config(stack)[0]))[0]
    specs = {n.name: n for n in parsed.nodes}
    configs = rke2_configs(run)
    assert set(configs) == set(specs)
    servers = {n for n, s in specs.items() if "etcd" in s.roles}
    overlay = {f"https://{specs[s].zerotier_ip}:9345" for s in servers}
    initializing = [name for name, c in configs.items() if "server" not in c]
    assert len(initializing) == 1 and initializing[0] in servers
    for name, config in configs.items():
        role = config_yaml.role(specs[name])
        assert config_yaml.unknown_keys(config, role) == [], name
        assert config["node-ip"] == specs[name].zerotier_ip
        assert ipaddress.ip_address(config["node-ip"]) in ipaddress.ip_network(
            parsed.settings.overlay_cidr
        )
        assert config["token"] == (TOKEN if role == "server" else AGENT_TOKEN)  # test_rke2_tokens
        if name not in initializing:
            assert config["server"] in overlay, name
            assert config["server"] != f"https://{config['node-ip']}:9345"


def test_token_kubeconfig_and_canaries_stay_secret() -> None:
    for stack in STACKS:
        run = committed_rke2(stack)
        tokens = run.of_type("random:index/randomPassword:RandomPassword")
        assert [t for t in tokens if "result" in t.additional_secret_outputs] == tokens
        for vm in vms(run):
            assert is_secret(vm.inputs["userData"])
        assert is_secret(run.outputs["kubeconfig"])
        secrets = [*CANARIES.values(), TOKEN, AGENT_TOKEN]
        seen = set()
        for reg in run.registrations:
            text = plaintext(reg.inputs)
            assert not [s for s in secrets if s in text], reg.name
            seen |= {s for s in secrets if s in json.dumps(reveal(reg.inputs))}
        assert not [s for s in secrets if s in plaintext(run.outputs)]
        assert {CANARIES["zerotierToken"], CANARIES["sshPrivateKey"], TOKEN, AGENT_TOKEN} <= seen
        if stack == "prod":
            assert {CANARIES["etcdS3AccessKey"], CANARIES["etcdS3SecretKey"]} <= seen


def test_one_ready_command_depends_on_every_vm_and_member() -> None:
    run = committed_rke2("prod")
    command = ready_command(run)
    members = [r for r in run.registrations if r.name.endswith("-zt-member")]
    for dependency in [*vms(run), *members]:
        assert dependency.urn in command.dependencies, dependency.name
    assert "stdout" in command.additional_secret_outputs
    assert "delete" not in command.inputs  # nothing about it can remove the cluster
    script = reveal(command.inputs["create"])
    assert all(vm.name in script for vm in vms(run))
    # prod runs ingress-nginx: the command waits for its admission webhook, so the
    # Ingress objects created after it are not rejected (rke.ingress)
    assert "ingress_pending" in script and "rke2-ingress-nginx-controller-admission" in script
    kubeconfig = yaml.safe_load(reveal(run.outputs["kubeconfig"]))
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    anchor = reveal(command.inputs["connection"])["host"]
    assert server == f"https://{anchor}:6443" and anchor != "127.0.0.1"
    record = run.outputs[RECORD_OUTPUT]
    assert record["initServer"] == "mc-prod-ramnode-master-0" and len(record["servers"]) == 3


def _schedule_deletes(removed: list[Registration]) -> list[set[str]]:
    """The order Pulumi deletes ``removed`` in (``stepGenerator.ScheduleDeletes`` in
    pkg/resource/deploy/step_generator.go): antichains of names, each one only after
    everything that depends on its members (or is their child) has gone."""
    remaining = {r.urn: r for r in removed}
    order: list[set[str]] = []
    while remaining:
        depended_on = {d for r in remaining.values() for d in [*r.dependencies, r.parent]}
        free = {u for u in remaining if u not in depended_on}
        assert free, "a dependency cycle"
        order.append({remaining.pop(u).name for u in free})
    return order


def _grow(values: dict[str, Any]) -> None:
    sites = values["multicloud:sites"]
    sites["digitalocean"]["workers"] += 1
    sites["extra"] = {**sites["digitalocean"], "siteId": 4, "masters": 0, "workers": 1}


@cache
def deployed(grow: bool = False) -> Run:
    """prod again, as a later update sees it: its first update's record read back."""
    previous = committed_rke2("prod").outputs[RECORD_OUTPUT]
    config, secrets = rke2_config("prod", _grow if grow else None)
    run = run_program(
        config, secret_keys=secrets, stack="prod", previous_outputs={RECORD_OUTPUT: previous}
    )
    assert run.error is None, run.error
    return run


def test_scaling_workers_and_adding_a_site_change_no_existing_registration() -> None:
    before, after = deployed(), deployed(grow=True)
    assert not set(by_urn(before)) - set(by_urn(after))
    added = {r.name for u, r in by_urn(after).items() if u not in by_urn(before)}
    assert {"mc-prod-digitalocean-worker-1", "mc-prod-extra-worker-0"} <= added
    changes = changed_inputs(before, after)
    ready = ready_command(after).urn
    assert set(changes.pop(ready)) <= {"create", "triggers"}
    assert changes == {}, changes


def test_removing_a_node_drains_and_deletes_it_before_its_vm() -> None:
    before, after = deployed(grow=True), deployed()
    removed = [r for u, r in by_urn(before).items() if u not in by_urn(after)]
    names = {r.name for r in removed}
    leave = "mc-prod-digitalocean-worker-1-leave"
    assert {leave, "mc-prod-digitalocean-worker-1"} <= names
    order = _schedule_deletes(removed)
    position = {name: i for i, chain in enumerate(order) for name in chain}
    assert position[leave] < position["mc-prod-digitalocean-worker-1"]
    assert position[leave] < position["mc-prod-digitalocean-worker-1-zt-member"]
    command = by_urn(before)[next(r.urn for r in removed if r.name == leave)]
    script = reveal(command.inputs["delete"])
    assert "kubectl drain" in script and "delete node" in script
    assert "mc-prod-digitalocean-worker-1" in script
    assert command.delete_before_replace  # a rebuilt VM's old Node goes first


def test_every_leave_command_runs_on_another_server() -> None:
    run = committed_rke2("prod")
    hosts = {
        r.name.removesuffix("-leave"): reveal(r.inputs["connection"])["host"]
        for r in run.of_type(READY)
        if r.name.endswith("-leave")
    }
    assert set(hosts) == {vm.name for vm in vms(run)}
    addresses = {n["name"]: n["sshAddress"] for n in run.outputs["nodes"]}
    for name, host in hosts.items():
        assert host != addresses[name], name
        assert "master" in next(n for n, a in addresses.items() if a == host)


def test_every_kubernetes_object_validates_for_the_pinned_minor() -> None:
    run = committed_rke2("prod")
    plan_schema = load_yaml(
        (REFERENCE / "system-upgrade-controller" / "upgrade.cattle.io_plans.yaml").read_text()
    )["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    hcc_schema = load_yaml((REFERENCE / "helm.cattle.io_helmchartconfigs.yaml").read_text())[
        "spec"
    ]["versions"][0]["schema"]["openAPIV3Schema"]
    kinds = set()
    for reg in run.registrations:
        if not reg.type.startswith("kubernetes:") or reg.type.startswith(
            ("kubernetes:helm.sh/", "pulumi:providers")
        ):
            continue
        manifest = reveal(reg.inputs)
        kinds.add(manifest["kind"])
        if manifest["kind"] == "Plan":
            jsonschema.Draft202012Validator(plan_schema).validate(manifest)
        elif manifest["kind"] == "ClusterIssuer":
            continue  # cert-manager's CRD: checked by hand in test_workloads
        else:
            kubernetes_validate.validate(manifest, MINOR, strict=True)
    assert {"Plan", "Deployment", "CustomResourceDefinition", "ClusterRoleBinding"} <= kinds
    servers = [vm for vm in vms(run) if "master" in vm.name]
    for vm in servers:
        for path, text in files(vm).items():
            if path.startswith("/var/lib/rancher/rke2/server/manifests/"):
                manifest = yaml.safe_load(text)
                jsonschema.Draft202012Validator(hcc_schema).validate(manifest)
                if manifest["metadata"]["name"] == "rke2-canal":
                    values = yaml.safe_load(manifest["spec"]["valuesContent"])
                    assert values["flannel"]["iface"].startswith("zt")


def test_a_first_preview_with_rke2_evaluates() -> None:
    run = committed_rke2("prod", True)
    assert all(reveal(vm.inputs["userData"]) == UNKNOWN for vm in vms(run))
    assert ready_command(run)


def test_render_writes_each_nodes_rke2_config_masked(tmp_path: Path) -> None:
    run = committed_rke2("prod")
    parsed, network = check_stack(raw_values(rke2_config("prod")[0]))
    write(run, parsed, network, tmp_path)
    written = {p.stem: p.read_text() for p in (tmp_path / "rke2").glob("*.yaml")}
    assert set(written) == {n.name for n in parsed.nodes}
    for name, text in written.items():
        document = yaml.safe_load(text)
        assert document["token"] == "[secret]" and document["node-name"] == name
        assert not [s for s in [*CANARIES.values(), TOKEN] if s in text]
    assert not (tmp_path / "cluster.yml").exists()
    assert "RKE2" in (tmp_path / "architecture.mmd").read_text()


def test_the_firewall_is_the_same_as_with_rke() -> None:
    from tests.support.program_runs import committed

    def rules(run: Run) -> list[Any]:
        types = (
            "openstack:networking/secGroupRule:SecGroupRule",
            "digitalocean:index/firewall:Firewall",
        )
        found = [r for t in types for r in run.of_type(t)]
        return sorted(json.dumps([r.name, reveal(r.inputs)], sort_keys=True) for r in found)

    assert rules(committed_rke2("prod")) == rules(committed("prod"))


def test_an_existing_cluster_read_back_from_the_stack_output_initializes_nothing() -> None:
    first, later = committed_rke2("prod"), deployed()
    init = first.outputs[RECORD_OUTPUT]["initServer"]
    init_ip = rke2_configs(first)[init]["node-ip"]
    configs = rke2_configs(later)
    assert all("server" in c for c in configs.values())  # the cluster exists: all join
    others = {n: c for n, c in configs.items() if n != init}
    assert {c["server"] for c in others.values()} == {f"https://{init_ip}:9345"}
    assert configs[init]["server"] != f"https://{init_ip}:9345"  # if rebuilt, it joins another
    # Only the initializing server's (boot-only, ignored) user-data differs from the first update.
    changed = changed_inputs(first, later)
    assert {by_urn(later)[u].name for u in changed} == {init}, changed


def test_make_render_with_the_engine_override_writes_rke2_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.render import main

    assert main(["--stack", "home", "--out", str(tmp_path), "--engine", "rke2"]) == 0
    target = tmp_path / "home"
    written = sorted(p.stem for p in (target / "rke2").glob("*.yaml"))
    assert written == sorted(vm.name for vm in vms(committed_rke2("home")))
    for path in (target / "rke2").glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["token"] == "[secret]"
    assert not (target / "cluster.yml").exists()
    assert "mc-home-home-master-0" in capsys.readouterr().out


def test_the_engine_override_drops_only_another_engines_kubernetes_version() -> None:
    """``make render ENGINE=…`` keeps a version the engine accepts or nobody accepts (the
    program then refuses it naming the key) and drops one only another engine installs."""
    from engines import ENGINES
    from scripts.render import PROJECT, with_engine

    key = f"{PROJECT}:kubernetesVersion"
    rke_version = ENGINES["rke"].rules.default_version
    rke2_version = ENGINES["rke2"].rules.default_version
    assert with_engine({key: rke_version}, "rke2")[key] == ""
    assert with_engine({key: rke2_version}, "rke")[key] == ""
    assert with_engine({key: rke2_version}, "rke2")[key] == rke2_version
    assert with_engine({key: "v9.9.9"}, "rke2")[key] == "v9.9.9"
