"""``python -m roll --stack prod [--dry-run] [--only NODE] [--site SITE]`` (``make roll``).

Wires the roll to the real things: the Automation API's stack over this repository, with
the user's ``pulumi`` CLI and backend (``PULUMI_BACKEND_URL``, as ``make up`` passes it),
and ``ClusterChecks`` built from the stack's outputs and config. Secrets (kubeconfig, SSH
key, Cloudflare token) are read into memory only (``pulumi stack output --show-secrets``,
``pulumi config get``) and handed to the checks, which keep them in 0600 files of a private
directory while they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roll import stack_file
from roll.checks import Checks, ClusterChecks, Target, Timeouts, output_value
from roll.driver import ChecksFactory, Options, roll

if TYPE_CHECKING:
    from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent


def target(config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> Target:
    """What the checks need from the stack file: engine, SSH user, Longhorn, the record."""
    entrypoint = config.get("multicloud:entrypoint")
    cloudflare = (entrypoint or {}).get("cloudflare")
    longhorn = entrypoint is not None and (entrypoint.get("longhorn") or {}).get("enabled", True)
    return Target(
        engine=str(config.get("multicloud:engine", "rke")),
        ssh_user=str(config.get("multicloud:sshUser", "rke")),
        nodes=rows,
        longhorn=bool(longhorn),
        record=(str(cloudflare["zoneId"]), str(cloudflare["recordName"])) if cloudflare else None,
    )


def cluster_checks(
    stack: auto.Stack,
    config: Mapping[str, Any],
    timeouts: Timeouts | None = None,
    say: Callable[[str], None] = print,
    dns: bool = True,
) -> ChecksFactory:
    """The roll's checks factory: ``ClusterChecks`` from the stack's outputs at the roll's
    start (``nodes``, ``kubeconfig``) and its config (the SSH key; the Cloudflare token when
    the stack has a record and ``dns``: without it the DNS wait is skipped)."""

    @contextmanager
    def checks(outputs: Mapping[str, Any]) -> Iterator[Checks]:
        rows = output_value(outputs.get("nodes")) or []
        spec = target(config, rows)
        token = None
        if spec.record is not None and dns:
            token = stack.get_config("multicloud:cloudflareApiToken").value
        with ClusterChecks(
            spec,
            kubeconfig=str(output_value(outputs["kubeconfig"])),
            ssh_key=stack.get_config("multicloud:sshPrivateKey").value,
            cloudflare_token=token,
            timeouts=timeouts or Timeouts(),
            say=say,
        ) as live:
            yield live

    return checks


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make roll", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.add_argument("--only", metavar="NODE", help="roll this node only")
    parser.add_argument("--site", metavar="SITE", help="roll this site's nodes only")
    args = parser.parse_args(argv)

    from pulumi import automation as auto  # the CLI-driven stack, only when rolling for real

    try:
        stack = auto.select_stack(args.stack, work_dir=str(ROOT))
    except auto.errors.CommandError as error:
        print(
            f"make roll: cannot select stack {args.stack} (`make init STACK={args.stack}` "
            f"creates it; PULUMI_BACKEND_URL names the backend):\n{error}",
            file=sys.stderr,
        )
        return 1
    config = stack_file.load(
        (ROOT / f"Pulumi.{args.stack}.yaml").read_text(), f"Pulumi.{args.stack}.yaml"
    )

    options = Options(args.stack, ROOT, args.dry_run, args.only, args.site)
    try:
        return roll(options, stack, cluster_checks(stack, config))
    except KeyboardInterrupt:
        print("make roll: interrupted before any update started; nothing changed")
        return 130


if __name__ == "__main__":
    sys.exit(main())
