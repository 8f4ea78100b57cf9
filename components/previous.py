"""The stack's own outputs from its previous update, read through a StackReference to the
stack being updated (pulumi/pulumi#3722 shows the pattern). A stack never deployed has
none: every output reads as None. The RKE2 join record (``rke2/component.py``), the chart
versions (``components/services/cluster_services.py``) and the boot record
(``components/boot_outputs.py``) are carried forward this way."""

from __future__ import annotations

import pulumi


def this_stack(name: str, parent: pulumi.Resource | None = None) -> pulumi.StackReference:
    """A StackReference named ``name`` to this very stack (a read: never a change)."""
    return pulumi.StackReference(
        name,
        stack_name=f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
