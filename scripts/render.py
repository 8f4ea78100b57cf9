"""`make render STACK=<stack>`: evaluate the real program offline and write what it would do.

Needs no cloud credentials and no Pulumi CLI. Writes to build/<stack>/:
nodes.md, reachability.md, architecture.mmd, resources.json, boot.json (the boot record
this code writes, components/boot_record.py), user-data/<node>.yaml, and
the engine's cluster description: cluster.yml (rke) or rke2/<node>.yaml, each node's
/etc/rancher/rke2/config.yaml with its secrets masked (rke2); prints the node and
reachability tables. ``--engine`` renders the stack with another engine than its file
says (``ENGINE=rke2`` for make).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
import yaml

from components.boot_record import BOOT_OUTPUT
from components.config import ClusterConfig, raw_values, stack_failover_budget
from components.diagram import architecture_mermaid
from components.engine import NodeConfig
from components.preflight import NetworkPlan
from engines import ENGINES, check_stack
from scripts.offline import (
    PROJECT,
    ROOT,
    Run,
    masked,
    masked_text,
    public_strings,
    reveal,
    run_program,
    secret_strings,
    stack_config,
)
from scripts.render_summary import checksum_warnings, image_warnings
from scripts.stack_yaml import StackFileError
from scripts.versions import warnings as version_warnings

VM_TYPES = ("openstack:compute/instance:Instance", "digitalocean:index/droplet:Droplet")
BOOT_JSON = "boot.json"


def nodes_markdown(config: ClusterConfig) -> str:
    rows = [
        "| site | node | roles | size | overlay address | ingress |",
        "|---|---|---|---|---|---|",
    ]
    for node in config.nodes:
        rows.append(
            f"| {node.site} | {node.name} | {', '.join(node.roles)} | {node.size} | "
            f"{node.zerotier_ip} | {node.ingress} |"
        )
    return "\n".join(rows) + "\n"


def boot_markdown(record: Mapping[str, Any] | None) -> str:
    """The boot record a render would write (the stack output ``boot``), per node: the image,
    size and component versions its VM is created from. Which running nodes are behind needs
    the stack's state: `make preview` (its ``bootDrift``) shows them, a render cannot."""
    rows = ["| node | image | size | versions |", "|---|---|---|---|"]
    for name, entry in sorted(((record or {}).get("nodes") or {}).items()):
        versions = ", ".join(f"{k} {v}" for k, v in sorted(entry["versions"].items()))
        rows.append(f"| {name} | {entry['image']} | {entry['size']} | {versions} |")
    return "\n".join(rows) + "\n"


def reachability_markdown(stack: str, network: NetworkPlan) -> str:
    """The preflight's table (components/preflight/) under a heading naming the stack."""
    return f"# Reachability: stack {stack}\n\n{network.markdown()}"


def failover_text(config: ClusterConfig) -> str:
    """The entrypoint's computed worst-case failover and its terms, or why there is none."""
    entry = config.settings.entrypoint
    if entry is None or entry.cloudflare is None:
        return "entrypoint failover: none, this stack has no public record to move\n"
    if not entry.updater.enabled:
        return "entrypoint failover: none, the updater is off and the record stays put\n"
    try:
        budget = stack_failover_budget(config)
    except ValueError as err:  # accepted only with failoverBoundSeconds: null
        return f"entrypoint failover: none, {err}\n"
    lines = budget.lines()
    bound = entry.failover_bound_seconds
    lines[0] = f"entrypoint failover, {lines[0]} (bound: {f'{bound} s' if bound else 'none'})"
    return "\n".join(lines) + "\n"


def cluster_yml(run: Run) -> str:
    commands = run.of_type("command:local:Command")
    return str(reveal(commands[0].inputs.get("stdin")))


def node_configs(run: Run, node_config: NodeConfig) -> dict[str, str]:
    """Node name -> the engine's config file its user-data writes, secrets masked."""
    configs = {}
    for vm in run.registrations:
        if vm.type not in VM_TYPES:
            continue
        user_data = yaml.safe_load(str(reveal(vm.inputs["userData"])))
        for item in user_data.get("write_files", []):
            if item["path"] == node_config.path:
                configs[vm.name] = node_config.shown(item["content"])
    return configs


def with_engine(config: dict[str, str], engine: str) -> dict[str, str]:
    """The stack's config rendered with ``engine``; a kubernetesVersion written for another
    engine (this one refuses it, another accepts it) is dropped, so the engine's default
    applies."""
    config = dict(config)
    config[f"{PROJECT}:engine"] = engine
    version = config.get(f"{PROJECT}:kubernetesVersion", "")
    if version and _another_engines(version, engine):
        print(
            f"--engine {engine}: ignoring kubernetesVersion {version} (another engine's)",
            file=sys.stderr,
        )
        config[f"{PROJECT}:kubernetesVersion"] = ""
    return config


def _another_engines(version: str, engine: str) -> bool:
    """Whether ``engine`` refuses ``kubernetesVersion: <version>`` and another accepts it."""
    if ENGINES[engine].rules.version_problem(version) is None:
        return False
    return any(e.rules.version_problem(version) is None for e in ENGINES.values())


def resources_json(run: Run) -> str:
    """Every registration as ``[{type, name, parent, inputs}]`` with secrets masked,
    sorted by (type, name): registrations arrive in the order their outputs resolve, which
    varies from run to run, and a reviewer diffs this file between two commits."""
    entries = [
        {
            "type": r.type,
            "name": r.name,
            "parent": r.parent.rsplit("::", 1)[-1] if r.parent else None,
            "inputs": masked(r.inputs),
        }
        for r in sorted(run.registrations, key=lambda r: (r.type, r.name))
    ]
    return json.dumps(entries, indent=2, sort_keys=True) + "\n"


def deployed_images(config: ClusterConfig) -> list[str]:
    """The images the program deploys itself for this stack (components/services)."""
    entry = config.settings.entrypoint
    if entry is None:
        return []
    return [part.image for part in (entry.updater, entry.app) if part.enabled]


def render(stack: str, out: Path, engine: str | None = None) -> int:
    config, secret_keys = stack_config(stack)
    if engine is not None:
        config = with_engine(config, engine)
    run = run_program(config, secret_keys=secret_keys, stack=stack)
    if isinstance(run.error, pulumi.RunError):
        print(run.error, file=sys.stderr)
        return 1
    if run.error is not None:
        raise run.error
    parsed, network = check_stack(raw_values(config))  # the program accepted it: cannot fail
    target = out / stack
    table = write(run, parsed, network, target)
    print(f"stack {stack}: {len(run.registrations)} resources\n")
    print(table)
    print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}/")
    for warning in checksum_warnings(parsed.settings.engine):  # loud: a banner on stderr
        print(f"\n{'!' * 78}\nWARNING: checksum not pinned. {warning}\n{'!' * 78}", file=sys.stderr)
    for warning in image_warnings(deployed_images(parsed)):
        print(f"\nWARNING: image not pinned by digest. {warning}", file=sys.stderr)
    # Components past their upstream end of life or outside the engine's Kubernetes range
    # (reference/versions.json; `make versions` shows the whole table).
    for warning in version_warnings(parsed.settings.engine):
        print(f"\nCAUTION: outside the upstream support window. {warning}", file=sys.stderr)
    return 0


def write(run: Run, parsed: ClusterConfig, network: NetworkPlan, target: Path) -> str:
    """Write the render's files for one evaluated stack into ``target`` (``<out>/<stack>``);
    returns the node and reachability tables to print."""
    (target / "user-data").mkdir(parents=True, exist_ok=True)
    for old in [
        *(target / "user-data").glob("*.yaml"),
        target / "cluster.yml",
        *(path for name in ENGINES for path in (target / name).glob("*.yaml")),
    ]:
        old.unlink(missing_ok=True)
    table = nodes_markdown(parsed)
    (target / "nodes.md").write_text(table)
    reachability = reachability_markdown(target.name, network)
    (target / "reachability.md").write_text(reachability)
    engine = ENGINES[parsed.settings.engine]
    if engine.node_config is not None:  # each node's file, in a folder named by the engine
        (target / engine.name).mkdir(exist_ok=True)
        for name, text in node_configs(run, engine.node_config).items():
            (target / engine.name / f"{name}.yaml").write_text(text)
    else:
        (target / "cluster.yml").write_text(cluster_yml(run))
    (target / "architecture.mmd").write_text(architecture_mermaid(parsed))
    # the boot record this code gives every node (the mock cloud's VM ids; the digests are of
    # the user-data as rendered here, with placeholder secrets): render_summary.py compares
    # the base branch's with the PR head's
    record = reveal(run.outputs.get(BOOT_OUTPUT))
    (target / BOOT_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    boot = "Boot inputs (the stack output `boot` this code writes for a new VM):\n\n"
    boot += boot_markdown(record)
    boot += "Which running nodes are behind needs the stack's state: `make preview` (bootDrift).\n"
    (target / "resources.json").write_text(resources_json(run))
    secrets = secret_strings(run)  # user-data embeds keys, identities and tokens
    public = public_strings(run)  # ...and public keys, which stay readable
    for vm in run.registrations:
        if vm.type in VM_TYPES:
            (target / "user-data" / f"{vm.name}.yaml").write_text(
                masked_text(str(reveal(vm.inputs["userData"])), secrets, public)
            )
    return table + "\n" + boot + "\n" + reachability + "\n" + failover_text(parsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--engine", choices=sorted(ENGINES), help="override the stack's engine")
    args = parser.parse_args(argv)
    if not (ROOT / f"Pulumi.{args.stack}.yaml").exists():
        print(f"no stack file Pulumi.{args.stack}.yaml", file=sys.stderr)
        return 2
    try:
        return render(args.stack, args.out, args.engine or None)
    except StackFileError as err:  # as `pulumi` would refuse the file: no traceback
        print(err, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
