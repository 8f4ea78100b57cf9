"""`make roll`'s driver (roll/driver.py) against a fake Automation API stack and fake
checks: the order of the updates, the temporary stack files they get, stopping and
resuming, dry-run, Ctrl-C, and the stack file left byte-identical."""

from __future__ import annotations

import copy
import difflib
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.automation import EngineEvent, OutputValue

from roll import stack_file
from roll.driver import Options, StepFailed, check_update, roll
from roll.plan import RollRefused, Step

ROOT = Path(__file__).resolve().parents[2]
VM = {
    "openstack": "openstack:compute/instance:Instance",
    "do": "digitalocean:index/droplet:Droplet",
}
# A stack file as `pulumi config set --secret` leaves it: the repository's prod file with an
# encryption salt and a secure value, which the temporary copies must keep byte for byte.
SECRET_TAIL = """  multicloud:sshPrivateKey:
    secure: v1:Zm9vYmFyYmF6:cXV4cXV1eA==
encryptionsalt: v1:c2FsdHNhbHQ=:v1:AAAAAAAA:BBBBBBBB==
"""


def node_rows(masters: Mapping[str, int], workers: Mapping[str, int]) -> list[dict[str, Any]]:
    rows = []
    for site in ("ramnode", "home", "digitalocean"):
        for kind, count in (("master", masters[site]), ("worker", workers[site])):
            for i in range(count):
                rows.append(
                    {
                        "name": f"mc-prod-{site}-{kind}-{i}",
                        "site": site,
                        "roles": ["controlplane", "etcd"] if kind == "master" else ["worker"],
                        "ingress": "none" if kind == "master" else "public",
                        "overlayIp": "10.147.1.1",
                        "sshAddress": "192.0.2.1",
                    }
                )
    return rows


class FakeStack:
    """``pulumi.automation.Stack``'s outputs/preview/up over a model of the deployed nodes:
    an update replaces the nodes its config file lists in ``rebuild`` delete-first and
    creates/deletes masters to the counts it asks for, emitting the engine's events."""

    def __init__(self, drift: Mapping[str, list[str]], masters: Mapping[str, int]) -> None:
        self.masters = dict(masters)
        self.workers = {"ramnode": 1, "home": 2, "digitalocean": 1}
        self.drift = dict(drift)
        self.missing: set[str] = set()
        self.ups: list[dict[str, Any]] = []  # each update's config file, as read
        self.texts: list[str] = []
        self.fail_at: int | None = None  # the update (1-based) that fails after its delete
        self.interrupt_at: int | None = None
        self.create_first = False
        self.seq = itertools.count(1)
        self.paths: list[Path] = []
        self.preview_error: Exception | None = None
        self.previews: list[str] = []  # each preview's config file name
        self.moves_cluster: set[str] = set()  # nodes whose replacement replaces the provider
        self.pending: list[tuple[str, str]] = []  # other VM changes the code holds (op, node)
        self.pending_other: list[tuple[str, str, str]] = []  # and others' (op, type, name)

    def outputs(self) -> dict[str, OutputValue]:
        return {
            "nodes": OutputValue(node_rows(self.masters, self.workers), False),
            "kubeconfig": OutputValue("apiVersion: v1", True),
        }

    def _event(self, **data: Any) -> EngineEvent:
        return EngineEvent.from_json({"sequence": next(self.seq), "timestamp": 0, **data})

    def _step(self, op: str, kind: str, name: str) -> EngineEvent:
        """The engine's event for a step on resource ``name`` of type ``kind``."""
        urn = f"urn:pulumi:prod::multicloud::x${kind}::{name}"
        return self._event(resourcePreEvent={"metadata": {"op": op, "urn": urn, "type": kind}})

    def _vm(self, op: str, name: str) -> EngineEvent:
        return self._step(op, VM["do"] if "digitalocean" in name else VM["openstack"], name)

    def _stack_outputs(self) -> EngineEvent:
        outputs = {"bootDrift": self.drift}
        metadata = {"op": "same", "urn": "urn:root", "type": "pulumi:pulumi:Stack",
                    "new": {"type": "pulumi:pulumi:Stack", "outputs": outputs}}  # fmt: skip
        return self._event(resOutputsEvent={"metadata": metadata})

    def preview(self, *, config_file: str, on_event: Callable[[Any], None]) -> None:
        """The roll's first preview (preview.yaml) shows what the deployed stack lacks; a
        step's preview (step-N.yaml) the events its update would emit, changing nothing."""
        if self.preview_error is not None:
            raise self.preview_error
        self.previews.append(Path(config_file).name)
        if Path(config_file).name.startswith("step-"):
            shadow = copy.deepcopy(self)
            shadow.fail_at = None
            shadow._update(yaml.safe_load(Path(config_file).read_text())["config"], 0, on_event)
            return
        for name in sorted(self.missing):
            on_event(self._vm("create", name))
        for op, name in self.pending:
            on_event(self._vm(op, name))
        for op, kind, name in self.pending_other:
            on_event(self._step(op, kind, name))
        on_event(self._stack_outputs())

    def up(self, *, config_file: str, on_event: Callable[[Any], None]) -> None:
        text = Path(config_file).read_text()
        assert Path(config_file).stat().st_mode & 0o077 == 0, "the copy is private"
        self.paths.append(Path(config_file))
        self.texts.append(text)
        config = yaml.safe_load(text)["config"]
        self.ups.append(config)
        n = len(self.ups)
        if n == self.interrupt_at:
            raise KeyboardInterrupt
        self._update(config, n, on_event)

    def _update(self, config: Mapping[str, Any], n: int, on_event: Callable[[Any], None]) -> None:
        for name in sorted(self.missing):  # a VM absent from the state: created anew
            on_event(self._vm("create", name))
            self.drift.pop(name, None)
        self.missing.clear()
        for name in config.get("multicloud:rebuild", []):
            if self.create_first:
                on_event(self._vm("create-replacement", name))
            on_event(self._vm("delete-replaced", name))
            if n == self.fail_at:
                self.missing.add(name)
                raise RuntimeError(f"creating {name}: 500 Internal Server Error")
            if not self.create_first:
                on_event(self._vm("create-replacement", name))
            if name in self.moves_cluster:
                on_event(self._step("replace", "pulumi:providers:kubernetes", "services-k8s"))
            self.drift.pop(name, None)
        wanted = stack_file.site_counts(config, "masters")
        for site, count in wanted.items():
            while self.masters[site] < count:
                on_event(self._vm("create", f"mc-prod-{site}-master-{self.masters[site]}"))
                self.masters[site] += 1
            while self.masters[site] > count:
                self.masters[site] -= 1
                on_event(self._vm("delete", f"mc-prod-{site}-master-{self.masters[site]}"))
        on_event(self._stack_outputs())


class FakeChecks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail_after: str | None = None

    def before(self, step: Step, outputs: Any) -> None:
        self.calls.append(("before", step.node))

    def after(self, step: Step, outputs: Any) -> None:
        self.calls.append(("after", step.node))
        if step.node == self.fail_after:
            from roll.checks import CheckFailed

            raise CheckFailed(f"{step.node} Ready: not within 900s (not Ready: {step.node})")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.prod.yaml").write_text(
        (ROOT / "Pulumi.prod.yaml").read_text() + SECRET_TAIL
    )
    return tmp_path


ONE = {"ramnode": 1, "home": 1, "digitalocean": 1}
EVERY = [n["name"] for n in node_rows(ONE, {"ramnode": 1, "home": 2, "digitalocean": 1})]


def run(root: Path, stack: FakeStack, checks: FakeChecks, **options: Any) -> tuple[int, str]:
    said: list[str] = []

    @contextmanager
    def factory(outputs: Any) -> Iterator[FakeChecks]:
        yield checks

    before = (root / "Pulumi.prod.yaml").read_bytes()
    code = roll(Options("prod", root, **options), stack, factory, said.append, lambda: 0.0)
    assert (root / "Pulumi.prod.yaml").read_bytes() == before, "the stack file changed"
    return code, "\n".join(said)


def test_rolls_every_drifted_node_once_in_order_with_its_own_stack_file(root: Path) -> None:
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    checks = FakeChecks()
    code, out = run(root, stack, checks)
    assert code == 0, out
    assert [c["multicloud:rebuild"] for c in stack.ups] == [[n] for n in [
        "mc-prod-ramnode-worker-0", "mc-prod-home-worker-0", "mc-prod-home-worker-1",
        "mc-prod-digitalocean-worker-0", "mc-prod-ramnode-master-0", "mc-prod-home-master-0",
        "mc-prod-digitalocean-master-0"]]  # fmt: skip
    assert stack.drift == {}
    assert checks.calls[:3] == [
        ("before", "mc-prod-ramnode-worker-0"),
        ("after", "mc-prod-ramnode-worker-0"),
        ("before", "mc-prod-home-worker-0"),
    ]
    assert "node 1 of 7: mc-prod-ramnode-worker-0 replace: pulumi up (0s)" in out
    assert "rolled 7 node(s)" in out
    # each copy is the stack file, byte for byte, plus the one inserted `rebuild` line
    original = (root / "Pulumi.prod.yaml").read_text()
    diff = [
        line
        for line in difflib.unified_diff(original.splitlines(), stack.texts[0].splitlines(), n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert diff == ['+  multicloud:rebuild: ["mc-prod-ramnode-worker-0"]']
    assert not any(p.exists() for p in stack.paths), "a temporary stack file was left"
    assert "encryptionsalt: v1:c2FsdHNhbHQ=" in stack.texts[0]
    assert "secure: v1:Zm9vYmFyYmF6:cXV4cXV1eA==" in stack.texts[0]


def test_stops_at_a_failing_update_then_resumes(root: Path) -> None:
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    stack.fail_at = 3
    code, out = run(root, stack, FakeChecks())
    assert code == 1
    assert "stopped at node 3 of 7: mc-prod-home-worker-1 (replace) failed while pulumi up" in out
    assert "500 Internal Server Error" in out
    assert "`make roll STACK=prod` again" in out and "resumes" in out
    assert len(stack.ups) == 3
    # running again: the half-replaced node is finished first, then the rest
    stack.fail_at = None
    code, out = run(root, stack, FakeChecks())
    assert code == 0, out
    assert "1. finish mc-prod-home-worker-1" in out
    assert [c.get("multicloud:rebuild") for c in stack.ups[3:]] == [None] + [[n] for n in [
        "mc-prod-digitalocean-worker-0", "mc-prod-ramnode-master-0", "mc-prod-home-master-0",
        "mc-prod-digitalocean-master-0"]]  # fmt: skip
    assert stack.drift == {} and not stack.missing
    code, out = run(root, stack, FakeChecks())
    assert code == 0 and "nothing to roll" in out and len(stack.ups) == 8


def test_stops_when_a_wait_fails(root: Path) -> None:
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    checks = FakeChecks()
    checks.fail_after = "mc-prod-home-worker-0"
    code, out = run(root, stack, checks)
    assert code == 1 and len(stack.ups) == 2
    assert "stopped at node 2 of 7: mc-prod-home-worker-0 (replace) failed while waiting" in out
    assert "not within 900s" in out


def test_dry_run_prints_the_plan_and_changes_nothing(root: Path) -> None:
    stack = FakeStack({"mc-prod-home-worker-0": ["image a → b"]}, ONE)
    checks = FakeChecks()
    code, out = run(root, stack, checks, dry_run=True)
    assert code == 0 and stack.ups == [] and checks.calls == []
    assert "1. replace mc-prod-home-worker-0 (home): image a → b" in out


def test_ctrl_c_says_which_node_may_be_half_replaced(root: Path) -> None:
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    stack.interrupt_at = 2
    code, out = run(root, stack, FakeChecks())
    assert code == 130
    assert "interrupted at node 2 of 7: mc-prod-home-worker-0" in out
    assert "may be half-replaced" in out and "`make roll STACK=prod` finishes it" in out


def test_ctrl_c_waits_for_the_cli_to_finish_cancelling(root: Path) -> None:
    """Ctrl-C reaches the roll while `pulumi up` runs: the roll waits until the CLI has
    stopped (here: the fake's update keeps going for a moment after the signal, then
    fails as a cancelled update does) before it reports and returns."""
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    finished: list[str] = []
    real_up = stack.up

    def cancelled_up(*, config_file: str, on_event: Callable[[Any], None]) -> None:
        if len(stack.ups) == 1:  # the second update
            stack.ups.append({})
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal signals the group
            time.sleep(0.5)  # the CLI finishing the operation in flight
            finished.append("cli stopped")
            raise RuntimeError("update canceled")
        real_up(config_file=config_file, on_event=on_event)

    stack.up = cancelled_up  # type: ignore[method-assign]
    code, out = run(root, stack, FakeChecks())
    assert code == 130 and finished == ["cli stopped"], out
    assert out.index("the Pulumi CLI is cancelling") < out.index("interrupted at node 2 of 7")


def test_three_to_five_masters_steps_one_member_with_the_roll_key(root: Path) -> None:
    path = root / "Pulumi.prod.yaml"
    text = path.read_text()
    text = text.replace(
        "      masters: 1\n      workers: 1\n", "      masters: 2\n      workers: 1\n", 1
    )
    text = text.replace(
        "      masters: 1\n      workers: 2\n", "      masters: 2\n      workers: 2\n", 1
    )
    path.write_text(text)
    stack = FakeStack({}, ONE)
    code, out = run(root, stack, FakeChecks())
    assert code == 0, out
    steps = [
        (
            stack_file.site_counts(c, "masters"),
            c.get("multicloud:roll"),
            c.get("multicloud:rebuild"),
        )
        for c in stack.ups
    ]
    assert steps == [
        ({"ramnode": 1, "home": 2, "digitalocean": 1}, {"targetMasters": 5}, None),
        ({"ramnode": 2, "home": 2, "digitalocean": 1}, None, None),
    ]
    assert stack.masters == {"ramnode": 2, "home": 2, "digitalocean": 1}


def test_an_update_that_replaces_create_first_or_another_vm_stops_the_roll(root: Path) -> None:
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    stack.create_first = True
    code, out = run(root, stack, FakeChecks())
    # the step's preview shows it: stopped before any update
    assert code == 1 and len(stack.ups) == 0 and stack.previews == ["preview.yaml", "step-1.yaml"]
    assert "the preview did not change the VMs as planned" in out
    assert "should be replaced delete-first" in out and "Nothing was changed" in out
    step = Step("replace", "a", "s", "", (), ("a",), None, 3, 3, False)
    events = FakeStack({}, ONE)
    ok = [events._vm("delete-replaced", "a"), events._vm("create-replacement", "a")]
    check_update(step, ok)
    with pytest.raises(StepFailed, match=r"other VMs changed: b \(delete\)"):
        check_update(step, [*ok, events._vm("delete", "b")])


def test_a_step_whose_preview_replaces_the_cluster_provider_changes_nothing(root: Path) -> None:
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    stack.moves_cluster = {"mc-prod-ramnode-master-0"}
    code, out = run(root, stack, FakeChecks())
    assert code == 1, out
    # the workers first, then the masters, ramnode's first: stopped before its update
    assert len(stack.ups) == len([n for n in EVERY if "worker" in n]), stack.ups
    assert (
        "the preview for mc-prod-ramnode-master-0 deletes or replaces other resources: "
        "pulumi:providers:kubernetes::services-k8s (replace). Nothing was changed" in out
    ), out


def test_a_roll_waits_until_the_codes_other_changes_are_applied(root: Path) -> None:
    """A VM update or a removal an update left unfinished would ride along with the first
    step (and its check would stop it): the roll refuses before any step."""
    for pending in [("update", "mc-prod-home-worker-0"), ("delete", "mc-prod-home-worker-2")]:
        stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
        stack.pending = [pending]
        checks = FakeChecks()
        code, out = run(root, stack, checks)
        assert code == 1 and stack.ups == [] and checks.calls == [], out
        assert f"::{pending[1]} ({pending[0]})" in out and "does not make" in out, out
        assert "`make up STACK=prod`, then roll" in out, out
    # any other resource: a replaced join token would lock new nodes out, an updated
    # provider (clusterIdentifier added) would ride along with the first step
    for other in [("replace", "random:index/randomPassword:RandomPassword", "cluster-token"),
                  ("update", "pulumi:providers:kubernetes", "services-k8s")]:  # fmt: skip
        stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
        stack.pending_other = [other]
        code, out = run(root, stack, FakeChecks())
        assert code == 1 and stack.ups == [], out
        assert f"changes a roll does not make: {other[1]}::{other[2]} ({other[0]})" in out, out
    # a plugin's provider reconfigured (the dynamic providers' default provider shows an
    # update with a --config-file; the real engine's preview does) changes nothing deployed
    stack = FakeStack({n: ["image a → b"] for n in EVERY}, ONE)
    stack.pending_other = [("update", "pulumi:providers:pulumi-python", "default")]
    code, out = run(root, stack, FakeChecks())
    assert code == 0 and len(stack.ups) == len(EVERY), out


def test_an_update_that_replaces_objects_in_the_cluster_stops_the_roll() -> None:
    """A replaced Kubernetes provider replaces every object it manages: the step stops
    (the cluster objects' updates and the node's own commands are fine)."""
    step = Step("replace", "a", "s", "", (), ("a",), None, 3, 3, False)
    events = FakeStack({}, ONE)
    ok = [events._vm("delete-replaced", "a"), events._vm("create-replacement", "a")]
    event = events._step
    check_update(step, [*ok, event("update", "pulumi:providers:kubernetes", "services-k8s"),
                        event("replace", "command:remote:Command", "a-leave")])  # fmt: skip
    lost = [event("replace", "pulumi:providers:kubernetes", "services-k8s"),
            event("delete-replaced", "kubernetes:helm.sh/v3:Release", "longhorn")]  # fmt: skip
    expected = (
        r"other resources: pulumi:providers:kubernetes::services-k8s \(replace\), "
        r"kubernetes:helm.sh/v3:Release::longhorn \(delete-replaced\)"
    )
    with pytest.raises(StepFailed, match=expected):
        check_update(step, [*ok, *lost])


def test_a_stack_file_with_a_rebuild_left_over_is_refused(root: Path) -> None:
    path = root / "Pulumi.prod.yaml"
    path.write_text(path.read_text().replace("config:\n", "config:\n  multicloud:rebuild: [x]\n"))
    code, out = run(root, FakeStack({}, ONE), FakeChecks())
    assert code == 1 and "sets multicloud:rebuild" in out and "pulumi config rm rebuild" in out


def test_a_step_file_adds_a_masters_line_where_the_site_has_none() -> None:
    text = (
        "config:\n  multicloud:clusterName: x  # name\n  multicloud:sites:\n"
        "    a:\n      kind: openstack\n      masters: 1\n    b:\n      kind: digitalocean\n"
        "      workers: 1\n"
    )
    copy = stack_file.temp_stack_file(text, {"a": 1, "b": 1}, (), 3)
    assert copy == (
        'config:\n  multicloud:roll: {"targetMasters": 3}\n  multicloud:clusterName: x  # name\n'
        "  multicloud:sites:\n    a:\n      kind: openstack\n      masters: 1\n    b:\n"
        "      masters: 1\n      kind: digitalocean\n      workers: 1\n"
    )


def test_a_stack_file_in_flow_style_is_refused_not_rewritten() -> None:
    text = "config:\n  multicloud:sites: {a: {masters: 1}}\n"
    with pytest.raises(RollRefused, match="block style"):
        stack_file.temp_stack_file(text, {"a": 3})


def test_a_failed_preview_changes_nothing_and_says_so(root: Path) -> None:
    stack = FakeStack({}, ONE)
    stack.preview_error = RuntimeError("error: sites.home.image: not found")
    code, out = run(root, stack, FakeChecks())
    assert code == 1 and stack.ups == []
    assert "the preview failed, nothing was changed" in out and "sites.home.image" in out


@pytest.mark.parametrize(
    ("deployed", "wanted"),
    [
        (
            {"ramnode": 1, "home": 1, "digitalocean": 1},
            {"ramnode": 2, "home": 2, "digitalocean": 1},
        ),
        (
            {"ramnode": 2, "home": 2, "digitalocean": 1},
            {"ramnode": 1, "home": 1, "digitalocean": 1},
        ),
    ],
)
def test_every_step_file_passes_the_programs_config_check(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    deployed: dict[str, int],
    wanted: dict[str, int],
) -> None:
    """3 -> 5 and 5 -> 3 masters with a drifted master: each step's temporary stack file is
    read as `make render` reads a stack file and accepted by the program's checks (even
    totals through `roll`), with the step's `rebuild` and master counts."""
    import scripts.offline as offline
    from engines import check_stack
    from roll.plan import Cluster, nodes_from_rows, plan
    from scripts.render import raw_values

    text = (ROOT / "Pulumi.prod.yaml").read_text()
    for site, count in wanted.items():  # the stack file asks for the new counts
        text = stack_file.temp_stack_file(text, {site: count})
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    monkeypatch.setattr(offline, "ROOT", tmp_path)
    rows = node_rows(deployed, {"ramnode": 1, "home": 2, "digitalocean": 1})
    config = stack_file.load(text, "prod")
    cluster = Cluster(
        "mc-prod",
        nodes_from_rows(rows),
        {"mc-prod-digitalocean-master-0": ["image a → b"]},
        stack_file.site_counts(config, "masters"),
        stack_file.site_counts(config, "workers"),
    )
    steps = plan(cluster).steps
    assert [s.kind for s in steps][-1] == "replace" and len(steps) == 3
    for step in steps:
        body = stack_file.temp_stack_file(
            text, dict(step.masters), step.rebuild, step.target_masters
        )
        (tmp_path / "Pulumi.step.yaml").write_text(body)
        settings = check_stack(raw_values(offline.stack_config("step")[0]))[0].settings
        assert list(settings.rebuild) == list(step.rebuild)
        assert {s: site.masters for s, site in settings.sites.items()} == dict(step.masters)
