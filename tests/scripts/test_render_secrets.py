"""`make render` writes no secret in the clear: every file under build/<stack>/ is free of
the config's secret values, generated secrets (ZeroTier identities, SSH host private keys,
the RKE2 token) and anything that reads as a private key, for both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import raw_values
from engines import check_stack
from scripts.offline import PLACEHOLDER, Run, reveal, secret_strings
from scripts.render import write
from tests.support.program_runs import (
    CANARIES,
    _evaluated,
    committed_rke2,
    edited,
    rke2_config,
    vms,
)

TLS_KEY = "tls:index/privateKey:PrivateKey"


def rke_with_canaries(stack: str) -> tuple[Run, dict[str, str]]:
    config, secrets = edited(stack, lambda values: None)
    config |= {f"multicloud:{k}": v for k, v in CANARIES.items()}
    secrets = sorted(set(secrets) | {f"multicloud:{k}" for k in CANARIES})
    return _evaluated(config, secrets, stack, False), config


def rendered(run: Run, config: dict[str, str], target: Path) -> dict[str, str]:
    write(run, *check_stack(raw_values(config)), target)
    return {str(p.relative_to(target)): p.read_text() for p in target.rglob("*") if p.is_file()}


@pytest.mark.parametrize("engine", ["rke", "rke2"])
def test_no_file_of_the_render_holds_a_secret(engine: str, tmp_path: Path) -> None:
    if engine == "rke2":
        run, config = committed_rke2("prod"), rke2_config("prod")[0]
    else:
        run, config = rke_with_canaries("prod")
    files = rendered(run, config, tmp_path)
    # The user-data really carried these before masking (so the check below means something).
    user_data = " ".join(str(reveal(vm.inputs["userData"])) for vm in vms(run))
    generated = [s for s in secret_strings(run) if s in user_data and len(s) >= 8]
    assert "PRIVATE KEY" in user_data and generated
    for name, text in files.items():
        assert "PRIVATE KEY" not in text, name
        assert PLACEHOLDER not in text, name  # mocked random results and identities hold it
        leaked = [s for s in [*CANARIES.values(), *generated] if s in text]
        assert not leaked, (name, [s[:20] for s in leaked])
    # Still a review document: only the secret lines are masked; host public keys stay.
    host_keys = [r.outputs["publicKeyOpenssh"].strip() for r in run.of_type(TLS_KEY)]
    assert host_keys and all(
        any(key in t for n, t in files.items() if n.startswith("user-data/")) for key in host_keys
    )
    sample = next(t for n, t in files.items() if n.startswith("user-data/"))
    assert sample.startswith("#cloud-config\n") and "[secret]" in sample
