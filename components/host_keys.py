"""Each node's generated SSH host key: cloud-init installs it (``components/boot/host_key.py``)
and every SSH client the program runs pins its public half."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi_tls as tls

from components.nodes import NodeSpec


def ssh_host_keys(nodes: Sequence[NodeSpec]) -> dict[str, tls.PrivateKey]:
    """One generated ED25519 SSH host key per node, by node name.

    ``pulumi_tls.PrivateKey`` keeps ``private_key_openssh`` as a secret output (the SDK's
    ``additional_secret_outputs``). A key lives as long as its resource: a rebuilt VM boots
    with the same key, so its pin holds.
    """
    return {
        node.name: tls.PrivateKey(f"{node.name}-ssh-host-key", algorithm="ED25519")
        for node in nodes
    }
