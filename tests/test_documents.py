"""The project's documents speak of the product, not of how it was built: no tracked file names a
round of work (a numbered work session or issue) except the results' history, no tracked path carries a
round's number, the README stays readable in ten minutes, and it links every results folder."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HISTORY = "docs/results/history.md"          # where superseded runs are kept, in the words of their time
RESULTS = ROOT / "docs" / "results"
README_MAX_BYTES = 20_000

# A round of work named in prose. A QGIS or HTTP session, pytest's scope="session" or "between
# QGIS sessions" do not match: only a session followed by its number, or referred to as the
# current one or as an owner.
ROUND_WORDING = re.compile(r"\bsession\s*\d+|\bsessions?\s+\d|\bthis session\b|\bsession's\b|\bissues?\s*#?\d+",
                           re.IGNORECASE)
ROUND_PATH = re.compile(r"issue\d+|_s\d+(?=[._/]|$)", re.IGNORECASE)


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.decode().split("\0") if p and not p.startswith(".venv/")]


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte in its first 8 KB) or a missing one."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def test_no_tracked_file_names_a_round_of_work():
    found = []
    for rel in tracked_files():
        if rel == HISTORY:
            continue
        text = text_of(ROOT / rel)
        if text is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            m = ROUND_WORDING.search(line)
            if m:
                found.append(f"{rel}:{n}: {m.group(0)!r}")
    assert not found, "name what a thing does, not when it was made:\n" + "\n".join(found[:40])


def test_no_tracked_path_carries_a_round_number():
    bad = [rel for rel in tracked_files() if ROUND_PATH.search(rel)]
    assert not bad, bad


def test_the_wording_check_tells_rounds_from_other_sessions():
    # the examples are split so that this file does not match its own check
    assert ROUND_WORDING.search("measured in sess" "ion 12") and ROUND_WORDING.search("Sess" "ions 9–11 tried")
    assert ROUND_WORDING.search("no GPU was lent to this sess" "ion") and ROUND_WORDING.search("iss" "ue 18's goal")
    assert ROUND_WORDING.search("the sess" "ion's runs")
    for fine in ('@pytest.fixture(scope="session")', "choices persist between QGIS sessions",
                 "an HTTP session with retries", "def example_session(tmp_path_factory):"):
        assert not ROUND_WORDING.search(fine), fine
    assert ROUND_PATH.search("scripts/gpu_issue18.py") and ROUND_PATH.search("docs/results/discovery_4mile_s11/x.md")
    assert not ROUND_PATH.search("tests/test_plugin_dock.py") and not ROUND_PATH.search("docs/results/speed/README.md")


def test_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; keep it under {README_MAX_BYTES} (details go in docs/)"


def test_readme_links_every_results_folder():
    readme = (ROOT / "README.md").read_text()
    folders = sorted(p.name for p in RESULTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    assert folders
    missing = [f for f in folders if f"docs/results/{f}/" not in readme]
    assert not missing, f"results folders the README does not link: {missing}"


def test_readme_and_results_links_resolve():
    docs = [ROOT / "README.md", ROOT / "docs" / "cli.md", ROOT / "docs" / "finer_data.md",
            *sorted(RESULTS.glob("**/README.md"))]
    broken = []
    for doc in docs:
        if not doc.exists():
            continue
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} → {target}")
    assert not broken, broken
