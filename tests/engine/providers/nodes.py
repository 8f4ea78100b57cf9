"""Booted fake VMs: a real ``sshd`` per VM and a small node emulator behind it.

When the fake cloud creates a VM and ``MULTICLOUD_FAKE_NODES`` is set, ``boot`` starts
Debian's ``sshd`` (openssh-server) in the caller's network namespace (the stand-in providers
run inside the harness's, tests/engine/harness.py), listening on port 22 of every loopback
address the cloud gave the VM (scripts/offline.py ``fake_outputs`` with
``MULTICLOUD_FAKE_ADDRESS_BASE``), presenting the ED25519 host key the VM's user-data installs
(cloud-config ``ssh_keys``, as cloud-init's cc_ssh writes it) and accepting the user-data's
user (``users[0]``) with its ``ssh_authorized_keys``. ``halt`` stops it when the VM goes.

How the user exists: sshd looks users up with getpwnam, and the program refuses ``sshUser:
root``; so sshd runs in a private mount namespace (``unshare --mount``) whose ``/etc/passwd``
is a copy with one more line, the user as uid 0 (``PermitRootLogin prohibit-password``:
keys only). Nothing on this machine's own files changes but ``/run/sshd`` (sshd's
privilege-separation directory, which Debian's unit creates too).

Every session goes through ``ForceCommand`` (the node's ``session`` script): a private mount
namespace where ``/etc/machine-id`` is the VM's own, and a PATH whose first folder holds the
node emulator, fakes of the commands the program's gates run (``NODE_COMMANDS``): what a
booted Debian 12 node with cloud-init, Docker and ZeroTier answers. On an RKE2 server the
session also sees (overlay mounts on /etc and /var/lib) RKE2's admin kubeconfig and a fake
of its kubectl (``_rke2_tree``). The program's commands run as root on this machine's files
(in that mount namespace): the gates and probes the program runs only read.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from scripts.offline import reveal

ENV = "MULTICLOUD_FAKE_NODES"
APISERVER_MANIFEST = Path("/var/lib/rancher/rke2/agent/pod-manifests/kube-apiserver.yaml")
SSHD = "/usr/sbin/sshd"
BOOT_TIMEOUT = 10.0  # seconds for sshd to write its pid file

# The session every SSH connection runs (sshd ForceCommand; the command asked for is in
# SSH_ORIGINAL_COMMAND, sshd session.c do_child). The user's login shell runs it.
_SESSION = """#!/bin/sh
[ -n "${SSH_ORIGINAL_COMMAND:-}" ] || { echo "fake node: no interactive shell" >&2; exit 1; }
exec unshare --mount --propagation private /bin/sh -c '
  if [ -d "$1/root" ]; then  # an RKE2 node: its /etc/rancher and /var/lib/rancher
    for d in etc var/lib; do
      w=$(echo "$d" | tr / -)
      mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$1/root/$w,workdir=$1/work/$w" "/$d" || exit 255
    done
  fi
  mount --bind "$1/machine-id" /etc/machine-id || exit 255
  export PATH="$1/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$1/home"
  cd "$HOME" && exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"' session @DIR@
"""

# What each command answers, as a booted node prints it:
# - `cloud-init status --wait`: "status: done", exit 0 once every stage ran (cloud-init
#   22.4.2, cloudinit/cmd/status.py handle_status_args; the version on Debian 12);
# - `docker info`: exit 0 once dockerd answers (docker/cli cli/command/system/info.go);
# - `sg docker -c CMD`: runs CMD with group docker (shadow-utils src/newgrp.c);
# - `ip -4 -o addr show dev IF`: one line per address, "N: IF    inet A/P brd B scope global
#   IF\\       valid_lft forever preferred_lft forever" (iproute2 ip/ipaddress.c
#   print_addrinfo, oneline), here the address ZeroTier's controller (the fake Central)
#   assigned to the node's member, found by the identity and network its user-data installs.
_CLOUD_INIT = """#!/bin/sh
case "$*" in
  "status --wait"|"status"|"status --long") echo "status: done"; exit 0 ;;
  *) echo "fake cloud-init: not modelled: $*" >&2; exit 1 ;;
esac
"""
_DOCKER = """#!/bin/sh
case "$1" in
  info) printf 'Client:\\n Version: 24.0.7\\nServer:\\n Server Version: 24.0.7\\n'; exit 0 ;;
  inspect|exec) exec "$(dirname "$0")/docker-etcd" "$@" ;;
  *) echo "fake docker: not modelled: $*" >&2; exit 1 ;;
esac
"""
_SG = """#!/bin/sh
[ "$2" = -c ] || { echo "fake sg: not modelled: $*" >&2; exit 1; }
exec /bin/sh -c "$3"
"""
_IP = '''#!@PYTHON@
"""fake ip: `ip -4 -o addr show dev IF` for the node's ZeroTier interface."""
import json, ssl, sys, urllib.request
from pathlib import Path
node = json.loads((Path(__file__).parent.parent / "node.json").read_text())
argv = sys.argv[1:]
if argv[:5] != ["-4", "-o", "addr", "show", "dev"] or len(argv) != 6:
    sys.exit(f"fake ip: not modelled: {' '.join(argv)}")
central = json.loads(Path(node["central"]).read_text()) if node.get("central") else None
if not central or not node.get("network_id"):
    sys.exit(f"Device \\"{argv[5]}\\" does not exist.")
url = f"{central['url']}/network/{node['network_id']}/member/{node['zerotier_address']}"
request = urllib.request.Request(url, headers={"Authorization": f"token {central['token']}"})
context = ssl.create_default_context(cafile=central["ca"])
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        member = json.load(answer)
except OSError:
    sys.exit(f"Device \\"{argv[5]}\\" does not exist.")
config = member.get("config", {})
if not config.get("authorized"):
    sys.exit(0)  # not authorized: the interface has no address yet
for address in config.get("ipAssignments", []):
    print(f"5: {argv[5]}    inet {address}/{node['prefix']} scope global {argv[5]}\\\\"
          "       valid_lft forever preferred_lft forever")
'''
# - `docker inspect etcd`, `docker exec etcd etcdctl ...` on an RKE master: RKE's etcd
#   container, there once `rke up` made the node's member ``etcd-<hostname>`` (the fake
#   rke's ``etcd.json`` in its world, tests/support/fake_rke.py; node.json ``rke_world``), else
#   "No such object"/"No such container" and exit 1 (docker/cli
#   cli/command/inspect/inspector.go, cli/command/container/exec.go). etcdctl v3 as
#   etcd-io/etcd etcdctl/ctlv3/command prints it: `member list` one row per member
#   "<hex ID>, started, <name>, <peer URLs>, <client URLs>, false" (printer.go
#   makeMemberListTable, printer_simple.go MemberList) or with `-w json` the
#   MemberListResponse; `endpoint health --cluster` "<url> is healthy: successfully
#   committed proposal: took = <d>" per healthy member and, for an unhealthy one, "<url> is
#   unhealthy: ..." on stderr and exit 1 (ep_command.go epHealthCommandFunc), `-w json` the
#   list of results; `member remove <hex ID>` removes it from the world ("Member <id>
#   removed from cluster <id>", printer_simple.go MemberRemove; an unknown id: "member not
#   found", exit 1). Health comes from the world's ``etcd-health.out`` (the fake rke's
#   ``etcd_unhealthy``). Each `member remove` is logged (time, argv) to the node's
#   ``docker.jsonl``.
_DOCKER_ETCD = r"""#!@PYTHON@
import hashlib, json, sys, time
from pathlib import Path
sys.path.insert(0, "@ROOT@")
from tests.support.fake_rke import write_members
here = Path(__file__).resolve().parent.parent
node = json.loads((here / "node.json").read_text())
world = Path(node.get("rke_world") or "/nonexistent")
members = json.loads((world / "etcd.json").read_text()) if (world / "etcd.json").exists() else {}
health_out = world / "etcd-health.out"
health = json.loads(health_out.read_text()) if health_out.exists() else []
sick = {h["endpoint"] for h in health if not h.get("health")}
CLUSTER = 0x5EED5EED5EED5EED
argv = sys.argv[1:]
def member_id(name):
    return int(hashlib.sha256(name.encode()).hexdigest()[:16], 16)
if f"etcd-{node.get('hostname')}" not in members:
    if argv[:1] == ["inspect"]:
        sys.exit(f"Error: No such object: {argv[-1]}")
    sys.exit("Error response from daemon: No such container: etcd")
if argv[:2] == ["inspect", "etcd"]:
    print(json.dumps([{"Name": "/etcd", "State": {"Status": "running", "Running": True}}]))
    sys.exit(0)
if argv[:3] != ["exec", "etcd", "etcdctl"]:
    sys.exit(f"fake docker: not modelled: {' '.join(argv)}")
words, as_json = [], False
rest = argv[3:]
while rest:
    arg = rest.pop(0)
    if arg in ("-w", "--write-out"):
        as_json = rest.pop(0) == "json"
    elif arg.startswith("--write-out="):
        as_json = arg.split("=", 1)[1] == "json"
    else:
        words.append(arg)
header = {"cluster_id": CLUSTER, "member_id": member_id(f"etcd-{node.get('hostname')}")}
if words == ["member", "list"]:
    if as_json:
        listing = [
            {"ID": member_id(n), "name": n, "peerURLs": [m["peer"]], "clientURLs": [m["client"]]}
            for n, m in members.items()
        ]
        print(json.dumps({"header": header, "members": listing}))
    else:
        for n, m in members.items():
            print(f"{member_id(n):x}, started, {n}, {m['peer']}, {m['client']}, false")
elif words == ["endpoint", "health", "--cluster"]:
    results = [
        {"endpoint": m["client"], "health": m["client"] not in sick, "took": "1.204ms"}
        for m in members.values()
    ]
    if as_json:
        print(json.dumps(results))
    for r in [] if as_json else results:
        if r["health"]:
            print(f"{r['endpoint']} is healthy: successfully committed proposal: took = 1.204ms")
        else:
            print(f"{r['endpoint']} is unhealthy: failed to commit proposal: "
                  "context deadline exceeded", file=sys.stderr)
    if any(not r["health"] for r in results):
        sys.exit("Error: unhealthy cluster")
elif words[:2] == ["member", "remove"] and len(words) == 3:
    with open(here / "docker.jsonl", "a") as log:
        log.write(json.dumps({"time": time.time(), "argv": argv}) + "\n")
    gone = [n for n in members if f"{member_id(n):x}" == words[2].lower()]
    if not gone:
        sys.exit("Error: etcdserver: member not found")
    del members[gone[0]]
    unhealthy = [n for n, m in members.items() if m["client"] in sick]
    write_members(world, members, unhealthy)
    print(f"Member {member_id(gone[0]):16x} removed from cluster {CLUSTER:16x}")
else:
    sys.exit(f"fake etcdctl: not modelled: {' '.join(words)}")
""".replace("@ROOT@", str(Path(__file__).resolve().parents[3]))

# - `sudo [-n] CMD`: the user-data's user has "ALL=(ALL) NOPASSWD:ALL" (sudo(8): -n never
#   prompts); the session already runs as root, so it runs CMD.
_SUDO = """#!/bin/sh
[ "${1:-}" = -n ] && shift
[ "${1:-}" = -- ] && shift
exec "$@"
"""
# - `ping -c 1 -W 2 ADDRESS` (the roll's overlay wait, roll/checks.py ``_overlay``): a reply
#   only when ZeroTier would carry it. A member the controller has not authorized gets no
#   network config (ZeroTierOne controller/EmbeddedNetworkController.cpp ``_request``:
#   NC_ERROR_ACCESS_DENIED), so no certificate of membership, and its peers drop its frames
#   (node/IncomingPacket.cpp ``_doFRAME``/``_doEXT_FRAME`` through node/Network.cpp
#   ``Network::gate``, node/Membership.hpp ``isAllowedOnNetwork``): the address answers when
#   the member holding it (the fake Central, by the identity and network each VM's user-data
#   installs) is authorized and its VM is live and booted, and this node's own member is
#   authorized too (else its interface has no address: no route, "connect: Network is
#   unreachable"). iputils ping (doc/ping.xml, ping/ping_common.c ``finish``; statistics as
#   ping/ping_output.c prints them): exit 0 with a reply, 1 with none, 2 on other errors.
_PING = r"""#!@PYTHON@
import json, ssl, sys, urllib.request
from pathlib import Path
here = Path(__file__).resolve().parent.parent
argv = sys.argv[1:]
if len(argv) != 5 or argv[0] != "-c" or argv[2] != "-W":
    sys.exit(f"fake ping: not modelled: {' '.join(argv)}")
target = argv[4]
def member(node):
    central = json.loads(Path(node["central"]).read_text()) if node.get("central") else None
    if not central or not node.get("network_id") or not node.get("zerotier_address"):
        return {}
    url = f"{central['url']}/network/{node['network_id']}/member/{node['zerotier_address']}"
    request = urllib.request.Request(url, headers={"Authorization": f"token {central['token']}"})
    context = ssl.create_default_context(cafile=central["ca"])
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return json.load(answer).get("config", {})
    except OSError:
        return {}
me = json.loads((here / "node.json").read_text())
if not member(me).get("authorized"):
    print("ping: connect: Network is unreachable", file=sys.stderr)
    sys.exit(2)
answers = False
for info in here.parent.glob("*/node.json"):
    other = json.loads(info.read_text())
    if not (info.parent / "sshd.pid").exists() or other.get("network_id") != me["network_id"]:
        continue  # not a live, booted VM on this network
    config = member(other)
    if config.get("authorized") and target in config.get("ipAssignments", []):
        answers = True
        break
print(f"PING {target} ({target}) 56(84) bytes of data.")
if answers:
    print(f"64 bytes from {target}: icmp_seq=1 ttl=64 time=0.412 ms")
print(f"\n--- {target} ping statistics ---")
print(f"1 packets transmitted, {int(answers)} received, {0 if answers else 100}% packet loss, "
      "time 0ms")
sys.exit(0 if answers else 1)
"""
NODE_COMMANDS = {
    "cloud-init": _CLOUD_INIT,
    "docker": _DOCKER,
    "docker-etcd": _DOCKER_ETCD,
    "sg": _SG,
    "ip": _IP,
    "sudo": _SUDO,
    "ping": _PING,
}

# RKE2's kubectl (/var/lib/rancher/rke2/bin/kubectl) on a server, for the cluster-ready and
# leave commands (rke2/scripts.py): the cluster's nodes are the booted RKE2 VMs, all Ready;
# `get --raw /readyz` prints "ok" (k8s.io/apiserver pkg/server/healthz/healthz.go); jsonpath
# prints the values bare (kubectl's JSONPath printer); rke2-ingress-nginx is rolled out on
# every node, its webhook has a ready endpoint and a CA bundle. The leave command's `drain
# NODE` prints "node/NODE cordoned" and "node/NODE drained" (kubectl pkg/cmd/drain/drain.go,
# RunCordonOrUncordon and RunDrain, NamePrinter), `delete node NODE` prints 'node "NODE"
# deleted' (pkg/cmd/delete/delete.go, PrintObj) and the Node is gone from then on (the
# VM's ``node-deleted`` marker; that server, as RKE2's watchForSelfDelete does
# (pkg/rke2/spc.go), removes its kube-apiserver and etcd manifests, and its own kubectl is
# refused from then on, as kubectl says it for a closed port); both answer NotFound for a
# Node not in the cluster, `get`
# nothing and exit 0 with `--ignore-not-found` (pkg/cmd/get/get.go ``GetOptions.Run``), and
# `-o name` prints "node/NODE" (the NamePrinter). Every
# call is logged (time, argv) to the server's ``kubectl.jsonl``.
_RKE2_KUBECTL = """#!@PYTHON@
import json, sys, time
from pathlib import Path
nodes_dir = Path("@NODES@")  # every booted VM of this fake cloud
with open(Path("@NODE@") / "kubectl.jsonl", "a") as log:
    log.write(json.dumps({"time": time.time(), "argv": sys.argv[1:]}) + "\\n")
if (Path("@NODE@") / "node-deleted").exists():  # this server left: no API server here
    sys.exit("The connection to the server 127.0.0.1:6443 was refused - "
             "did you specify the right host or port?")
names, vms = [], {}
for info in nodes_dir.glob("*/node.json"):
    node = json.loads(info.read_text())
    if node.get("rke2") and (info.parent / "sshd.pid").exists():
        if not (info.parent / "node-deleted").exists():
            names.append(node["hostname"])
            vms[node["hostname"]] = info.parent
argv, words, output = sys.argv[1:], [], ""
while argv:
    arg = argv.pop(0)
    if arg in ("--kubeconfig", "-n", "-l", "--namespace"):
        argv.pop(0)
    elif arg == "--raw":
        words += [arg, argv.pop(0)]
    elif arg == "-o":
        output = argv.pop(0)
    elif arg.startswith("-o"):
        output = arg[2:]
    elif not arg.startswith("-"):
        words.append(arg)
if words == ["get", "--raw", "/readyz"]:
    print("ok")
elif words[:2] == ["get", "node"] and len(words) == 3:
    if words[2] not in names:
        if "--ignore-not-found" in sys.argv:  # nothing printed, exit 0
            sys.exit(0)
        sys.exit(f\'Error from server (NotFound): nodes "{words[2]}" not found\')
    if output == "name":
        print(f"node/{words[2]}")
    else:
        print("True" if output.startswith("jsonpath") else f"{words[2]}   Ready")
elif words[:2] == ["get", "daemonset"]:
    print(f"1/1/{len(names)}/{len(names)}/{len(names)}", end="")
elif words[:2] == ["get", "endpointslices"]:
    print("10.42.0.10", end="")
elif words[:2] == ["get", "validatingwebhookconfiguration"]:
    print("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==", end="")
elif words[:1] == ["drain"] or words[:2] == ["delete", "node"]:
    if words[-1] not in names:
        sys.exit(f\'Error from server (NotFound): nodes "{words[-1]}" not found\')
    if words[0] == "drain":
        print(f"node/{words[-1]} cordoned\\nnode/{words[-1]} drained")
    else:
        (vms[words[-1]] / "node-deleted").touch()
        for component in ("kube-apiserver", "etcd"):  # watchForSelfDelete on that server
            (vms[words[-1]] / "root/var-lib/rancher/rke2/agent/pod-manifests" /
             f"{component}.yaml").unlink(missing_ok=True)
        print(f\'node "{words[-1]}" deleted\')
else:
    sys.exit(f"fake RKE2 kubectl: not modelled: {' '.join(sys.argv[1:])}")
"""


def _loopback(addresses: Iterable[Any]) -> list[str]:
    """The addresses a local sshd may listen on: loopback only, never any other."""
    found = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            continue
        if ip.is_loopback and str(ip) not in found:
            found.append(str(ip))
    return found


def vm_addresses(outputs: Mapping[str, Any], resources: Mapping[str, Any]) -> list[str]:
    """The VM's addresses: a droplet's own, an OpenStack instance's ports' fixed IPs and the
    floating IPs associated with those ports."""
    plain = reveal(dict(outputs))
    found: list[Any] = [plain.get("ipv4Address"), plain.get("ipv4AddressPrivate")]
    ports = {n.get("port") for n in plain.get("networks") or [] if isinstance(n, dict)}
    for id_, resource in resources.items():
        out = reveal(resource.get("outputs") or {})
        if id_ in ports:
            found += out.get("allFixedIps") or []
        associate = resource["type"].endswith("floatingIpAssociate:FloatingIpAssociate")
        if associate and out.get("portId") in ports:
            found.append(out.get("floatingIp"))
    return _loopback(found)


def _user_data(outputs: Mapping[str, Any]) -> dict[str, Any]:
    text = reveal(dict(outputs)).get("userData") or ""
    document = yaml.safe_load(text) if isinstance(text, str) else None
    return document if isinstance(document, dict) else {}


def _zerotier(document: Mapping[str, Any]) -> dict[str, str]:
    """The ZeroTier address (identity.secret) and network (networks.d) user-data installs."""
    found: dict[str, str] = {}
    for entry in document.get("write_files") or []:
        path = str(entry.get("path", ""))
        if path.endswith("/identity.secret"):
            found["zerotier_address"] = str(entry.get("content", "")).split(":", 1)[0]
        elif "/networks.d/" in path and path.endswith(".conf"):
            found["network_id"] = Path(path).stem
    return found


def _rke2_tree(node: Path, paths: list[str]) -> bool:
    """For an RKE2 node (its user-data writes /etc/rancher/rke2/), what RKE2 leaves on it,
    shown over the session's /etc and /var/lib: on a server, the admin kubeconfig
    (``/etc/rancher/rke2/rke2.yaml``, with a client key made here: a secret the program must
    keep secret) and its kubectl. Returns whether the node runs RKE2."""
    if not any(p.startswith("/etc/rancher/rke2/") for p in paths):
        return False
    for folder in ("root/etc", "root/var-lib", "work/etc", "work/var-lib"):
        (node / folder).mkdir(parents=True)
    if any(p.startswith("/var/lib/rancher/rke2/server/") for p in paths):
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "default",
                    "cluster": {
                        "certificate-authority-data": base64.b64encode(b"fake CA").decode(),
                        "server": "https://127.0.0.1:6443",
                    },
                }
            ],
            "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
            "current-context": "default",
            "users": [
                {
                    "name": "default",
                    "user": {
                        "client-certificate-data": base64.b64encode(b"fake cert").decode(),
                        "client-key-data": base64.b64encode(key).decode(),
                    },
                }
            ],
        }
        rke2 = node / "root/etc/rancher/rke2"
        rke2.mkdir(parents=True)
        (rke2 / "rke2.yaml").touch(mode=0o600)
        (rke2 / "rke2.yaml").write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        # the control plane's static pods (rke2 pkg/rke2/spc.go ``cleanupStaticPods`` names
        # them; staticpod.PodManifestsDir: <data-dir>/agent/pod-manifests)
        manifests = node / "root/var-lib" / APISERVER_MANIFEST.parent.relative_to("/var/lib")
        manifests.mkdir(parents=True)
        for component in ("kube-apiserver", "etcd"):
            (manifests / f"{component}.yaml").write_text(f"# {component} static pod\n")
        kubectl = node / "root/var-lib/rancher/rke2/bin/kubectl"
        kubectl.parent.mkdir(parents=True)
        script = _RKE2_KUBECTL.replace("@PYTHON@", sys.executable)
        script = script.replace("@NODES@", str(node.parent))
        kubectl.write_text(script.replace("@NODE@", str(node)))
        kubectl.chmod(0o755)
    return True


def boot(
    folder: Path,
    vm_id: str,
    outputs: Mapping[str, Any],
    resources: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> None:
    """Start the VM's sshd (see the module's docstring); no address on loopback: nothing.
    ``settings``: the harness's ``$MULTICLOUD_FAKE_NODES`` file, ``{"central": a JSON file
    with the fake Central's url, token and CA, or "", "overlay_prefix": the overlay's
    prefix length, "rke_world": the fake rke's world (optional; ``_DOCKER_ETCD``)}``."""
    addresses = vm_addresses(outputs, resources)
    document = _user_data(outputs)
    keys = document.get("ssh_keys") or {}
    users = document.get("users") or []
    if not addresses or not keys.get("ed25519_private") or not users:
        return
    user = users[0]
    node = folder / vm_id
    shutil.rmtree(node, ignore_errors=True)
    (node / "bin").mkdir(parents=True)
    (node / "home").mkdir()
    host_key = node / "ssh_host_ed25519_key"
    host_key.touch(mode=0o600)
    host_key.write_text(keys["ed25519_private"])
    (node / "authorized_keys").write_text("".join(k + "\n" for k in user["ssh_authorized_keys"]))
    (node / "machine-id").write_text(hashlib.sha256(vm_id.encode()).hexdigest()[:32] + "\n")
    passwd = Path("/etc/passwd").read_text().rstrip("\n") + "\n"
    (node / "passwd").write_text(passwd + f"{user['name']}:x:0:0:fake node:{node}/home:/bin/sh\n")
    info: dict[str, Any] = _zerotier(document) | {"prefix": str(settings["overlay_prefix"])}
    info |= {"addresses": addresses, "central": settings.get("central") or ""}
    info["rke_world"] = settings.get("rke_world") or ""  # the fake rke's etcd members
    paths = [str(f.get("path", "")) for f in document.get("write_files") or []]
    info |= {"hostname": document.get("hostname"), "rke2": _rke2_tree(node, paths)}
    (node / "node.json").write_text(json.dumps(info))
    for name, script in NODE_COMMANDS.items():
        exe = node / "bin" / name
        exe.write_text(script.replace("@PYTHON@", sys.executable))
        exe.chmod(0o755)
    session = node / "session"
    session.write_text(_SESSION.replace("@DIR@", str(node)))
    session.chmod(0o755)
    config = [f"ListenAddress {a}:22" for a in addresses] + [
        f"HostKey {host_key}",
        f"PidFile {node / 'sshd.pid'}",
        f"AuthorizedKeysFile {node / 'authorized_keys'}",
        f"AllowUsers {user['name']}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AcceptEnv LANG LC_*",  # Debian's sshd_config default
        f"ForceCommand {session}",
    ]
    (node / "sshd_config").write_text("\n".join(config) + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run(
        [
            "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
            'mount --bind "$1/passwd" /etc/passwd && '
            'exec "$2" -f "$1/sshd_config" -E "$1/sshd.log"',
            "boot", str(node), SSHD,
        ],
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )  # fmt: skip
    deadline = time.monotonic() + BOOT_TIMEOUT
    while not (node / "sshd.pid").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"fake node {vm_id}: sshd wrote no pid file ({node / 'sshd.log'})")
        time.sleep(0.02)


def halt(folder: Path, vm_id: str) -> None:
    """Stop the VM's sshd (the VM is deleted)."""
    pid_file = folder / vm_id / "sshd.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)


def halt_all(folder: Path) -> None:
    """Stop every VM's sshd (the workspace closes)."""
    if folder.is_dir():
        for node in folder.iterdir():
            halt(folder, node.name)
