"""docs/config-reference.md is what the config models produce, and says what the program does."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

import pulumi
import pytest
from pulumi.runtime import config as runtime_config
from pydantic import Field

from components.config import (
    CONDITIONAL_SECRETS,
    DECLARED_SECRETS,
    ClusterSettings,
    ConfigError,
    raw_values,
    read_secrets,
)
from components.config.model import ConfigModel
from engines import check_stack
from scripts import config_reference
from scripts.offline import stack_config


def test_the_committed_reference_is_what_the_models_produce() -> None:
    committed = config_reference.OUTPUT.read_text(encoding="utf-8")
    generated = config_reference.render()
    if committed != generated:
        diff = difflib.unified_diff(
            committed.splitlines(),
            generated.splitlines(),
            "docs/config-reference.md (committed)",
            "docs/config-reference.md (from the models)",
            lineterm="",
            n=1,
        )
        pytest.fail(
            "docs/config-reference.md is out of date: run `make docs` and commit it.\n"
            + "\n".join(list(diff)[:40])
        )


def test_rendering_is_deterministic() -> None:
    assert config_reference.render() == config_reference.render()


def _all_paths() -> set[str]:
    return {row.path.strip("`") for s in config_reference.sections() for row in s.rows}


def test_every_key_the_models_accept_is_documented() -> None:
    paths = _all_paths()
    for key in ClusterSettings.model_fields:
        alias = ClusterSettings.model_fields[key].alias
        assert alias in paths, alias
    # spot checks through every level of nesting, as typed with `pulumi config set --path`
    for path in (
        "sites.<name>.workers",
        "sites.<name>.auth.applicationCredentialId",
        "sites.<name>.vpcUuid",
        "rke.etcd.s3.bucket",
        "rke.upgrade.drainTimeoutSeconds",
        "entrypoint.cloudflare.zoneId",
        "entrypoint.updater.tolerationSeconds",
    ):
        assert path in paths, path
    text = config_reference.render()
    assert "| `rke.etcd.electionTimeoutMs` | integer | `5000` | >= 50; <= 50000 |" in text
    assert "| `sites.<name>.sshVia` | string | `public` | `public`, `private`, `overlay` |" in text
    assert "| `clusterName` | string | **required** | 1 to 24 characters |" in text


def test_a_field_without_a_description_is_refused() -> None:
    class Undocumented(ConfigModel):
        documented: int = Field(1, description="Has one.")
        bare_key: int = 2

    missing: list[str] = []
    list(config_reference._walk(Undocumented, "x", "x", missing))
    assert len(missing) == 1 and "bare_key (x.bareKey)" in missing[0]


def test_the_secrets_table_lists_every_secret_with_its_command() -> None:
    text = config_reference.render()
    for key in (*DECLARED_SECRETS, *CONDITIONAL_SECRETS, "<site>OpenstackSecret"):
        command = key.replace("<site>", "home")  # a command with <site> in it is a redirection
        assert f"| `{key}` |" in text and f"`pulumi config set --secret {command} " in text, key
    # every command in the table can be pasted into a shell: no <, > or | outside a comment
    commands = re.findall(r"`(pulumi config set --secret [^`]*)`", text)
    assert len(commands) == len(DECLARED_SECRETS) + len(CONDITIONAL_SECRETS) + 1
    for command in commands:
        code = command.split("#", 1)[0].replace("< ~/.ssh/multicloud", "")
        assert not set(code) & set("<>|;&$"), command


@pytest.fixture
def restore_runtime_config() -> Iterator[None]:
    saved = dict(runtime_config.CONFIG.get() or {})
    saved_secrets = list(runtime_config._SECRET_KEYS.get() or [])
    yield
    pulumi.runtime.set_all_config(saved, saved_secrets)


@pytest.mark.parametrize("stack", ["home", "prod"])
@pytest.mark.usefixtures("restore_runtime_config")
def test_stack_secrets_are_the_ones_the_program_requires(stack: str) -> None:
    """``stack_secrets`` (what the reference and `make init` tell) matches ``read_secrets``."""
    config, secret_keys = stack_config(stack)  # every possible secret, as a placeholder
    parsed = check_stack(raw_values(config))[0]
    required = set()
    for full_key in secret_keys:
        without = {k: v for k, v in config.items() if k != full_key}
        pulumi.runtime.set_all_config(without, [k for k in secret_keys if k != full_key])
        try:
            read_secrets(parsed)
        except ConfigError as err:
            assert full_key in str(err)
            required.add(full_key.split(":", 1)[1])
    told = {key for key, _ in config_reference.stack_secrets(parsed.settings)}
    assert told == required
    assert {"zerotierToken", "sshPrivateKey"} <= told


def test_readme_links_to_sections_that_exist() -> None:
    readme = (config_reference.ROOT / "README.md").read_text(encoding="utf-8")
    anchors = {s.anchor for s in config_reference.sections()}
    links = re.findall(r"docs/config-reference\.md#([\w-]+)", readme)
    assert links, "README.md should link to the config reference's sections"
    assert set(links) <= anchors, set(links) - anchors
