set -eux
mkdir -p @BOOTSTRAP_STATE@
rm -f @BOOTSTRAP_FAILED@ @BOOTSTRAP_DONE@
failed() {
  echo "multicloud-bootstrap: FAILED (exit $1) at the last + command above: this node is" \
    "not set up; see /var/log/cloud-init-output.log" | tee @BOOTSTRAP_FAILED@ >&2
}
trap 'rc=$?; set +x; if [ "$rc" -eq 0 ]; then date -u >@BOOTSTRAP_DONE@; else failed "$rc"; fi' EXIT
# apt-get and apt-mark here are @APT_SHIMS@'s: each call waits for apt's locks (bounded).
PATH=@APT_SHIMS@:$PATH
