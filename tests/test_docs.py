"""The README stays short and correct, and the MkDocs site in docs/ builds with --strict and lists every page.

Fast: text checks, plus one `mkdocs build --strict` (a few seconds) when mkdocs and its Material theme are
installed (they come with the `test` extra); without them that one test is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"

MAIN_JOB = "bash scripts/install.sh && .venv/bin/lor2c-probe gradients --out runs/gradients"
TEST_COMMAND = "bash scripts/install.sh && HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -n auto --dist loadscope"
COMMANDS = ("train", "gradients", "spectrum", "sfs", "params", "bench", "report", "run")
MAX_README_LINES = 220

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _link_targets(markdown: str) -> list[str]:
    """Targets of inline links and images, outside fenced code blocks and code spans."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return _LINK.findall(text)


def _relative(target: str) -> bool:
    return not (re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")))


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))


def test_readme_is_short_and_has_the_two_commands() -> None:
    text = _readme()
    n = len(text.splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it at most {MAX_README_LINES} and move detail into docs/"
    assert MAIN_JOB in text
    assert TEST_COMMAND in text


def test_readme_links_each_command_guide() -> None:
    targets = set(_link_targets(_readme()))
    missing = [c for c in COMMANDS if f"docs/{c}.md" not in targets]
    assert not missing, f"README.md's command table lacks a link to the guide of: {', '.join(missing)}"


def test_readme_relative_links_point_to_existing_files() -> None:
    targets = [t for t in _link_targets(_readme()) if _relative(t)]
    assert targets, "no relative links found in README.md (is the link pattern broken?)"
    broken = [t for t in targets if not (ROOT / t.split("#", 1)[0]).exists()]
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_every_docs_page_is_in_the_nav() -> None:
    config = _mkdocs_config()
    assert config.get("docs_dir", "docs") == "docs"
    nav = set(_nav_pages(config.get("nav", [])))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), f"pages in docs/ missing from the mkdocs.yml nav: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries in mkdocs.yml with no page in docs/: {sorted(nav - pages)}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (pip install -e '.[test]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(MKDOCS_YML), "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
