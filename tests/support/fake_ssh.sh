#!/bin/sh
# The fake `ssh` (tests/support/fake_rke.py installs it with @CALLS@ and @WORLD@ filled in).
# Plain sh, no interpreter to start: the runner asks every node in some runs. It
# records the call, then answers the three commands the runner sends, from the world:
# the certificate probe, `etcdctl member list` + `endpoint health`, the Secret read.
calls="@CALLS@"; world="@WORLD@"; options=""
while [ $# -gt 0 ]; do
  case "$1" in
    *@*) target=$1; shift; break ;;
    *) options="$options $1" ;;
  esac
  shift
done
command=$1; address=${target#*@}
case "$command" in
  *RKE-CA-PRESENT*) kind=probe ;;
  *etcdctl*) kind=etcd ;;
  *full-cluster-state*) kind=secret ;;
  *) kind=other ;;
esac
keys=""
while IFS= read -r line; do
  case "$line" in
    "export "*) kv=${line#export }; keys="$keys\"${kv%%=*}\", " ;;
    "declare -x "*) kv=${line#declare -x }; keys="$keys\"${kv%%=*}\", " ;;
  esac
done <<END
$(export -p)
END
printf '{"tool": "ssh", "args": ["%s"], "address": "%s", "user": "%s", "command": "%s", "env_keys": [%s"-"], "pid": %s}\n' \
  "$options" "$address" "${target%@*}" "$kind" "$keys" "$$" >> "$calls"
show() { while IFS= read -r l || [ -n "$l" ]; do printf '%s\n' "$l"; done < "$1"; }
# With StrictHostKeyChecking=yes the node's key ($world/hostkeys/<address>, what its sshd
# presents) must be the known_hosts line for it, as OpenSSH checks it.
case "$options" in
  *StrictHostKeyChecking=yes*)
    known=${options##*UserKnownHostsFile=}; known=${known%% *}
    presented=""  # builtins only: the runner gives ssh a PATH without coreutils
    [ -e "$world/hostkeys/$address" ] && IFS= read -r presented < "$world/hostkeys/$address"
    pinned=""
    while IFS=' ' read -r name type blob; do
      [ "$name" = "$address" ] && pinned="$type $blob"
    done < "$known"
    if [ -z "$pinned" ] || [ "$pinned" != "$presented" ]; then
      echo "Host key verification failed." >&2
      exit 255
    fi ;;
esac
if [ -e "$world/unreachable/$address" ]; then
  echo "ssh: connect to host $address port 22: Connection refused" >&2
  exit 255
fi
ca="$world/nodes/$address/kube-ca.pem"
case $kind in
  probe)
    if [ -e "$ca" ]; then echo RKE-CA-PRESENT; show "$ca"; else echo RKE-CA-ABSENT; fi ;;
  etcd)
    show "$world/etcd-members.out"; echo; echo ==multicloud==; show "$world/etcd-health.out" ;;
  secret)
    if [ -e "$ca" ] && [ -e "$world/full-cluster-state.b64" ]; then
      show "$world/full-cluster-state.b64"
    else
      echo 'Error from server (NotFound): secrets "full-cluster-state" not found' >&2
      exit 1
    fi ;;
  *) echo "fake ssh: unsupported command" >&2; exit 2 ;;
esac
