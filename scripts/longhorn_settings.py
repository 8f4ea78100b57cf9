"""Derive ``reference/longhorn-settings.json`` from longhorn/longhorn-manager and
longhorn/longhorn git directories at one release tag.

    python -m scripts.longhorn_settings <longhorn-manager.git> <longhorn.git> v1.8.1 \
        > reference/longhorn-settings.json

What it reads, all at the tag:

- longhorn-manager ``types/setting.go``: every ``SettingDefinition`` (type, default, choices,
  integer range), keyed by the setting's name (``SettingName("...")``). The manager refuses a
  value outside these (``types.ValidateSetting``).
- longhorn ``chart/templates/default-setting.yaml``: which chart value
  (``defaultSettings.<key>``) becomes which setting.
- longhorn-manager ``controller/kubernetes_pod_controller.go``,
  ``handlePodDeletionIfNodeDown``: which workload kinds each
  ``node-down-pod-deletion-policy`` force-deletes from a node that is down
  (``isOwnedByStatefulSet``; ``isOwnedByDeployment``, a pod whose controller is a ReplicaSet).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

OWNER_KINDS = {"isOwnedByStatefulSet": "StatefulSet", "isOwnedByDeployment": "Deployment"}


def _show(git_dir: str, tag: str, path: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"{tag}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _constants(sources: list[str]) -> dict[str, str]:
    """Go constants of the forms ``X = T("v")``, ``X = "v"`` and ``X = 12``."""
    found: dict[str, str] = {}
    pattern = re.compile(
        r'^\s*(\w+)\s*=\s*(?:\w+\(\s*"([^"]*)"\s*\)|"([^"]*)"|(\d+))\s*(?://.*)?$', re.M
    )
    for text in sources:
        for name, typed, plain, number in pattern.findall(text):
            found.setdefault(name, typed or plain or number)
    return found


def _value(expr: str, constants: dict[str, str]) -> str | None:
    """A Go expression's string value: a literal, ``string(C)``, ``strconv.Itoa(C)`` or ``C``;
    None when it is computed at run time (``meta.Version``). A data-engine-specific default
    (``fmt.Sprintf("{%q:\"8\",%q:\"8\"}", DataEngineTypeV1, ...)``, longhorn-manager 1.10+)
    gives the v1 data engine's value, the engine this project's volumes use."""
    expr = expr.strip().rstrip(",")
    per_engine = re.match(
        r'fmt\.Sprintf\("\{%q:\\"([^"\\]*)\\".*?",\s*[\w.]*DataEngineTypeV1\b', expr
    )
    if per_engine:
        return per_engine.group(1)
    if expr.startswith('"'):
        return str(json.loads(expr))
    if expr.isdigit():
        return expr
    inner = re.fullmatch(r"(?:string|strconv\.Itoa)\((.*)\)", expr)
    name = (inner.group(1) if inner else expr).split(".")[-1]
    return constants.get(name)


def settings(setting_go: str, constants: dict[str, str]) -> dict[str, dict[str, Any]]:
    names = dict(re.findall(r'SettingName(\w+)\s*=\s*SettingName\("([^"]+)"\)', setting_go))
    definitions = dict(re.findall(r"SettingName(\w+):\s*SettingDefinition(\w+),", setting_go))
    out: dict[str, dict[str, Any]] = {}
    for block in re.finditer(
        r"SettingDefinition(\w+) = SettingDefinition\{(.*?)\n\t\}\n", setting_go, re.S
    ):
        ident, body = block.groups()
        setting = next((names[k] for k, v in definitions.items() if v == ident), None)
        if setting is None:
            continue
        kind = re.search(r"Type:\s*SettingType(\w+)", body)
        entry: dict[str, Any] = {"type": kind.group(1).lower() if kind else "string"}
        if re.search(r"DataEngineSpecific:\s*true", body):
            # a plain value applies to every data engine (types.ValidateSetting, 1.10+)
            entry["data_engine_specific"] = True
        default = re.search(r"^\t\tDefault:\s*(.+)$", body, re.M)
        entry["default"] = _value(default.group(1), constants) if default else None
        choices = re.search(r"Choices:\s*\[\](?:string|any)\{(.*?)\}", body, re.S)
        if choices:
            entry["choices"] = [
                _value(c, constants) for c in choices.group(1).split(",") if c.strip()
            ]
        for bound in ("Minimum", "Maximum"):
            found = re.search(rf"ValueIntRange{bound}:\s*([\w.]+)", body)
            if found:
                value = _value(found.group(1), constants)
                entry[bound.lower()] = int(value) if value is not None else None
        out[setting] = entry
    return dict(sorted(out.items()))


def chart_keys(template: str) -> dict[str, str]:
    # since 1.10 data-engine-specific settings go through `include "longhorn.multiTypeSetting"`
    pairs = re.findall(
        r'^\s*([a-z0-9-]+): \{\{ (?:include "longhorn\.multiTypeSetting" )?'
        r"\.Values\.defaultSettings\.(\w+)",
        template,
        re.M,
    )
    return {key: setting for setting, key in pairs}


def node_down_policies(controller_go: str, constants: dict[str, str]) -> dict[str, list[str]]:
    body = controller_go.split("func (kc *KubernetesPodController) handlePodDeletionIfNodeDown")[1]
    expression = body.split("shouldDelete :=")[1].split("\n\n")[0]
    freed: dict[str, list[str]] = {}
    for line in expression.splitlines():
        policy = re.search(r"deletionPolicy == types\.(\w+)", line)
        if policy:
            kinds = [OWNER_KINDS[f] for f in re.findall(r"(isOwnedBy\w+)\(pod\)", line)]
            freed[constants[policy.group(1)]] = kinds
    return freed


def main(manager_git: str, chart_git: str, tag: str) -> None:
    setting_go = _show(manager_git, tag, "types/setting.go")
    constants = _constants(
        [
            setting_go,
            _show(manager_git, tag, "types/types.go"),
            _show(manager_git, tag, "k8s/pkg/apis/longhorn/v1beta2/volume.go"),
            _show(manager_git, tag, "k8s/pkg/apis/longhorn/v1beta2/backup.go"),
        ]
    )
    definitions = settings(setting_go, constants)
    controller_go = _show(manager_git, tag, "controller/kubernetes_pod_controller.go")
    policies = node_down_policies(controller_go, constants)
    policies["do-nothing"] = []
    template = _show(chart_git, tag, "chart/templates/default-setting.yaml")
    manager_commit = subprocess.run(
        ["git", f"--git-dir={manager_git}", "rev-parse", f"{tag}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    document = {
        "_source": (
            f"longhorn/longhorn-manager {tag} (commit {manager_commit}): types/setting.go, "
            "controller/kubernetes_pod_controller.go; longhorn/longhorn "
            f"{tag}: chart/templates/default-setting.yaml; by scripts/longhorn_settings.py"
        ),
        "version": tag,
        "chart_default_settings": chart_keys(template),
        "settings": definitions,
        "node_down_pod_deletion_frees": dict(sorted(policies.items())),
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
