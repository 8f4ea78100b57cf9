"""reference/: every file the repository names exists, and no two names are one typo apart."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference"
NAMED = re.compile(r"reference/([A-Za-z0-9_.-]+\.(?:json|yaml|md))")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [
        ROOT / p
        for p in out.split("\0")
        if p
        and Path(p).suffix in {".py", ".md", ".yml", ".yaml", ".json", ".sh", ".mjs", ""}
        and (ROOT / p).is_file()
    ]


def _one_edit_apart(a: str, b: str) -> bool:
    """True when ``b`` is ``a`` with one character inserted, deleted or replaced."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_every_reference_file_the_repository_names_exists() -> None:
    dangling = []
    for path in _tracked_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for name in set(NAMED.findall(text)):
            if not (REFERENCE / name).exists():
                dangling.append(f"{path.relative_to(ROOT)}: reference/{name}")
    assert not dangling, "names of missing reference files:\n" + "\n".join(sorted(dangling))


def test_no_two_reference_files_are_one_typo_apart() -> None:
    # The rke binary pin was once named `rke-release` next to `rke-releases` (the release ->
    # Kubernetes table) and `rke2-release`: a misreading waiting to happen.
    stems = sorted(p.name.split(".")[0] for p in REFERENCE.iterdir())
    close = [(a, b) for i, a in enumerate(stems) for b in stems[i + 1 :] if _one_edit_apart(a, b)]
    assert not close, f"reference files whose names differ by one character: {close}"


def test_the_readme_describes_every_reference_file() -> None:
    readme = (REFERENCE / "README.md").read_text()
    missing = [
        p.name for p in REFERENCE.iterdir() if p.name != "README.md" and f"`{p.name}" not in readme
    ]
    assert not missing, f"reference/README.md does not describe {missing}"
