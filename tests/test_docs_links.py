"""Every relative link in the project's Markdown (README.md and the other pages at the root, docs/,
bench/ and the model cards under facegan/) points to a file that exists, and a link to a heading
(`page.md#anchor`, `#anchor`) names a heading that page has, so moving a section cannot leave a
dangling link behind.

A page another branch is writing may be linked before it lands: PENDING lists such pages (remove an
entry once its file exists)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PENDING: set[str] = set()  # pages another branch is writing, linked before they land
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    found = [*REPO.glob("*.md"), *REPO.glob("docs/**/*.md"), *REPO.glob("bench/**/*.md")]
    found += REPO.glob("facegan/**/*.md")
    return sorted(set(found))


def prose(text: str) -> str:
    """The text without code: fenced blocks and inline code spans hold examples, not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return LINK.findall(prose(page.read_text(encoding="utf-8")))


def test_the_pages_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in pages()}
    assert {"README.md", "BENCHMARKS.md", "RELIABILITY.md", "docs/recipes.md", "docs/python.md"} <= names


def test_the_readme_links_every_docs_page() -> None:
    """The README's documentation index names every page under docs/."""
    linked = {target.split("#")[0] for target in links(REPO / "README.md")}
    for page in sorted(REPO.glob("docs/*.md")):
        assert page.relative_to(REPO).as_posix() in linked, f"README.md does not link {page.name}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: …
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if path and not dest.exists():
            name = dest.relative_to(REPO).as_posix() if dest.is_relative_to(REPO) else str(dest)
            if name not in PENDING:
                broken.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)
