"""The docs stand on their own: no path outside the repository, no link to nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])
_ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?:work|home|tmp|root|opt|srv|usr|var|mnt)/[\w./-]+")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_no_path_outside_the_repository(doc: Path) -> None:
    """No absolute path of a build machine (the reader's checkout is elsewhere)."""
    assert _ABSOLUTE.findall(doc.read_text()) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_relative_links_point_at_files_of_the_repository(doc: Path) -> None:
    """Every relative link resolves to a file or directory of the checkout."""
    links = [target for target in _LINK.findall(doc.read_text()) if "://" not in target]
    missing = [target for target in links if not (doc.parent / target).exists()]
    assert missing == []
