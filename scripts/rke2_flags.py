"""Derive ``reference/rke2-cli-flags.json`` from a rancher/rke2 git directory.

    python -m scripts.rke2_flags /path/to/rke2.git v1.35.7+rke2r1 > reference/rke2-cli-flags.json

RKE2 wraps K3s's ``server`` and ``agent`` commands: ``pkg/cli/cmds/server.go`` and
``agent.go`` hold a ``K3SFlagSet`` naming every K3s flag with ``copyFlag``, ``hideFlag``
(kept, hidden from --help), ``dropFlag`` (removed) or a custom option (kept); RKE2's
``commandFromK3S`` (``pkg/cli/cmds/k3sopts.go``) fails the build if that map and K3s's
flags disagree, so the map's keys are exactly K3s's flag names. RKE2 then appends its own
flags (``serverFlag`` in server.go, ``commonFlag`` in root.go). A flag kept in the command
is a key ``/etc/rancher/rke2/config.yaml`` may carry: K3s's config parser
(``pkg/configfilearg/parser.go``, ``stripInvalidFlags``) drops any other key with only a
warning, which is why the project tests its config keys against this list.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

CONSTANTS = {  # pkg/images/images.go and pkg/podtemplate/types.go
    "images.KubeAPIServer": "kube-apiserver-image",
    "images.KubeControllerManager": "kube-controller-manager-image",
    "images.CloudControllerManager": "cloud-controller-manager-image",
    "images.KubeProxy": "kube-proxy-image",
    "images.KubeScheduler": "kube-scheduler-image",
    "images.Pause": "pause-image",
    "images.Runtime": "runtime-image",
    "images.ETCD": "etcd-image",
    "podtemplate.KubeAPIServer": "kube-apiserver",
    "podtemplate.KubeScheduler": "kube-scheduler",
    "podtemplate.KubeControllerManager": "kube-controller-manager",
    "podtemplate.KubeProxy": "kube-proxy",
    "podtemplate.Etcd": "etcd",
    "podtemplate.CloudControllerManager": "cloud-controller-manager",
}


def show(git_dir: str, ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", git_dir, "show", f"{ref}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def k3s_flags(source: str, var: str) -> dict[str, str]:
    """K3s flag name -> option (copy, hide, drop or custom) from ``var = mustCmdFromK3S(...)``."""
    block = source.split(f"{var} = mustCmdFromK3S(", 1)[1].split("\n\t})", 1)[0]
    options = {}
    for name, option in re.findall(r'^\t\t"([a-z0-9-]+)":\s*(\w+Flag|\{)', block, re.M):
        options[name] = {"copyFlag": "copy", "hideFlag": "hide", "dropFlag": "drop"}.get(
            option, "custom"
        )
    return options


def own_flags(source: str, block_start: str) -> list[str]:
    """Names of the ``&cli.*Flag{Name: ...}`` literals in the slice starting at block_start."""
    block = source.split(block_start, 1)[1].split("\n\t}\n", 1)[0]
    names = []
    for expr in re.findall(r"Name:\s*([^,\n]+),", block):
        expr = expr.strip()
        if expr.startswith('"'):
            names.append(expr.strip('"'))
            continue
        parts = [p.strip() for p in expr.split("+")]
        names.append("".join(CONSTANTS[p] if p in CONSTANTS else p.strip('"') for p in parts))
    return names


def main(git_dir: str, ref: str) -> None:
    commit = subprocess.run(
        ["git", "-C", git_dir, "rev-parse", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    server_go = show(git_dir, ref, "pkg/cli/cmds/server.go")
    agent_go = show(git_dir, ref, "pkg/cli/cmds/agent.go")
    root_go = show(git_dir, ref, "pkg/cli/cmds/root.go")
    common = own_flags(root_go, "commonFlag = []cli.Flag{")
    server_own = re.findall(r'Name:\s*"([a-z0-9-]+)"', server_go.split("serverFlag = ", 1)[0])
    agent_deprecated = own_flags(agent_go, "deprecatedFlags = []cli.Flag{")
    server_k3s = k3s_flags(server_go, "k3sServerBase")
    agent_k3s = k3s_flags(agent_go, "k3sAgentBase")
    server_kept = {n for n, o in server_k3s.items() if o != "drop"}
    agent_kept = {n for n, o in agent_k3s.items() if o != "drop"}
    server = sorted(server_kept | set(server_own) | set(common))
    agent = sorted(agent_kept | set(common) | set(agent_deprecated))
    document = {
        "_source": (
            f"rancher/rke2 {ref} (commit {commit}): pkg/cli/cmds/server.go (k3sServerBase, "
            "serverFlag), agent.go (k3sAgentBase, deprecatedFlags), root.go (commonFlag); "
            "derived by scripts/rke2_flags.py"
        ),
        "version": ref,
        "commit": commit,
        "server": server,
        "agent": agent,
        "dropped_from_k3s": {
            "server": sorted(n for n, o in server_k3s.items() if o == "drop"),
            "agent": sorted(n for n, o in agent_k3s.items() if o == "drop"),
        },
        "hidden": {
            "server": sorted(n for n, o in server_k3s.items() if o == "hide"),
            "agent": sorted(n for n, o in agent_k3s.items() if o == "hide"),
        },
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
