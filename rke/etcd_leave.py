"""A rebuilt or removed master leaves etcd before its machine goes (the RKE engine).

Per etcd node one ``remote.Command`` (``rke.component.etcd_leave_commands``) whose
``delete`` runs ``etcd_leave_script`` on another master over SSH. It carries the VM's id
in ``triggers`` and the VM is replaced delete-first, so Pulumi runs this delete before
deleting the old machine (``calculateDependentReplacements`` in
pkg/resource/deploy/step_generator.go) and the others keep quorum
(docs/operations.md#replace-a-node).
"""

from __future__ import annotations

import re
import shlex

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def etcd_leave_script(node: str) -> str:
    """POSIX sh, run on another master: remove node ``node``'s member ``etcd-<node>``.

    Exits 0 when the member is not listed (already removed) or when this master runs no
    etcd container any more (it left the cluster in the same update, whose ``rke up``
    removed every leaving member). Fails, keeping the machine (Pulumi skips deleting the
    dependencies of a failed delete), when etcd does not answer, when it is the only member,
    or when the other members would lose quorum without it. It asks RKE's etcd container
    (which carries ``ETCDCTL_*``, ``cluster/plan.go`` ``BuildEtcdProcess``); etcdctl's simple
    ``member list`` rows are ``<hex ID>, <status>, <name>, <peer URLs>, <client URLs>``
    (``ctlv3/command/printer.go`` makeMemberListTable), ``endpoint health --cluster`` prints
    ``<endpoint> is healthy: ...`` per healthy member, ``member remove`` takes the hex ID.
    """
    if not _NAME.fullmatch(node):
        raise ValueError(f"{node!r} is not a node name")
    member = shlex.quote(f"etcd-{node}")
    return f"""set -u
member={member}
fail() {{ echo "rke: $member: $*; its machine is kept" >&2; exit 1; }}
if ! docker inspect etcd >/dev/null 2>&1; then
  echo "rke: this master runs no etcd (it left too); rke up removed $member" >&2
  exit 0
fi
list=$(docker exec etcd etcdctl member list 2>&1) || fail "etcdctl member list failed: $list"
row=$(printf '%s\\n' "$list" | awk -F', ' -v m="$member" '$3 == m')
if [ -z "$row" ]; then
  echo "rke: $member is not an etcd member; nothing to remove" >&2
  exit 0
fi
id=$(printf '%s\\n' "$row" | awk -F', ' '{{print $1}}')
urls=$(printf '%s\\n' "$row" | awk -F', ' '{{print $5}}')
total=$(printf '%s\\n' "$list" | grep -c ', ')
[ "$total" -gt 1 ] ||
  fail "it is the only etcd member, its machine holds the data (restore a snapshot instead)"
health=$(docker exec etcd etcdctl endpoint health --cluster 2>/dev/null || true)
healthy=0
for endpoint in $(printf '%s\\n' "$health" | awk '/ is healthy:/ {{print $1}}'); do
  case ",$urls," in *",$endpoint,"*) ;; *) healthy=$((healthy + 1)) ;; esac
done
need=$(( (total - 1) / 2 + 1 ))
[ "$healthy" -ge "$need" ] ||
  fail "only $healthy of the $((total - 1)) other members are healthy (quorum $need)"
docker exec etcd etcdctl member remove "$id" >&2 || fail "etcdctl member remove $id failed"
echo "rke: removed $member ($healthy of $((total - 1)) other members healthy)" >&2
"""
