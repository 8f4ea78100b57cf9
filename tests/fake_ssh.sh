#!/bin/sh
# The fake `ssh` (tests/fake_rke.py installs it with @CALLS@ and @WORLD@ filled in).
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
