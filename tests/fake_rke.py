"""Stand-ins for the ``rke`` and ``kubectl`` binaries, installed by tests into a PATH dir.

``install(bin_dir)`` writes executables ``rke`` and ``kubectl`` that run this file.
Behaviour is steered by environment variables:

- ``FAKE_CALLS``: a file both fakes append one JSON line per call to (order of calls)
- ``FAKE_RKE_VERSION``: what ``rke --version`` reports (default v1.8.14)
- ``FAKE_RKE_FAIL=1``: ``rke up`` prints 60 lines, writes a new state, exits 1
- ``FAKE_RKE_EXPECT_RKESTATE``: file whose text ./cluster.rkestate must equal on ``up``
- ``FAKE_KUBECTL_NOTFOUND``: node name for which ``kubectl drain`` answers NotFound

``rke up`` behaves like RKE about the CA: kept from cluster.rkestate if present,
minted otherwise. It also echoes the S3 keys from cluster.yml, as a leaky tool might.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

import yaml


def install(bin_dir: Path, kubectl: bool = True) -> None:
    """Create ``rke`` (and ``kubectl``) wrappers running this file with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("rke", "kubectl") if kubectl else ("rke",):
        exe = bin_dir / tool
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{__file__}" {tool} "$@"\n')
        exe.chmod(0o755)


def _record(entry: dict[str, object]) -> None:
    calls = os.environ.get("FAKE_CALLS")
    if calls:
        with open(calls, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def _rke(args: list[str]) -> int:
    if args == ["--version"]:
        print(f"rke version {os.environ.get('FAKE_RKE_VERSION', 'v1.8.14')}")
        return 0
    if args[:1] != ["up"] or "--config" not in args:
        print(f"fake rke: unsupported {args}", file=sys.stderr)
        return 2
    config_path = Path(args[args.index("--config") + 1])
    config = yaml.safe_load(config_path.read_text())
    state_path = Path("cluster.rkestate")
    previous = state_path.read_text() if state_path.exists() else None
    key_path = config.get("ssh_key_path")
    cwd = Path.cwd()
    _record(
        {
            "tool": "rke",
            "args": args,
            "cwd": str(cwd),
            "cwd_mode": stat.S_IMODE(cwd.stat().st_mode),
            "config": config,
            "config_mode": stat.S_IMODE(config_path.stat().st_mode),
            "previous_state": previous,
            "key": Path(key_path).read_text() if key_path else None,
            "key_mode": stat.S_IMODE(Path(key_path).stat().st_mode) if key_path else None,
            "env_keys": sorted(os.environ),
        }
    )
    expected = os.environ.get("FAKE_RKE_EXPECT_RKESTATE")
    if expected and Path(expected).read_text() != previous:
        print("FATA[0000] fake rke: cluster.rkestate is not the previous one", file=sys.stderr)
        return 3
    backup = config.get("services", {}).get("etcd", {}).get("backup_config", {})
    s3 = backup.get("s3backupconfig")
    if s3:
        print(f"INFO[0001] [etcd] s3 {s3.get('access_key')} {s3.get('secret_key')}")
    state: dict[str, Any] = (
        json.loads(previous) if previous else {"ca": secrets.token_hex(16), "generation": 0}
    )
    state["generation"] += 1
    state["nodes"] = sorted(n["hostname_override"] for n in config["nodes"])
    state_path.write_text(json.dumps(state, indent=2))
    if os.environ.get("FAKE_RKE_FAIL") == "1":
        for i in range(60):
            print(f"INFO[{i:04d}] fake rke progress line {i}", file=sys.stderr)
        print("FATA[0060] Failed to bring up Control Plane: fake failure", file=sys.stderr)
        return 1
    Path("kube_config_cluster.yml").write_text(
        f"apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: {state['ca']}\n"
    )
    print("INFO[0100] Finished building Kubernetes cluster successfully")
    return 0


def _kubectl(args: list[str]) -> int:
    _record({"tool": "kubectl", "args": args, "env_keys": sorted(os.environ)})
    node = args[args.index("drain") + 1] if "drain" in args else None
    if node is not None and node == os.environ.get("FAKE_KUBECTL_NOTFOUND"):
        print(f'Error from server (NotFound): nodes "{node}" not found', file=sys.stderr)
        return 1
    print(f"node/{node} drained")
    return 0


if __name__ == "__main__":
    tool, rest = sys.argv[1], sys.argv[2:]
    sys.exit(_rke(rest) if tool == "rke" else _kubectl(rest))
