"""The README and the topic pages in docs/, read by the tests that keep them true to the code
(every metric documented, every Kubernetes Secret created, the benchmark table between its
markers). One reader, so a test names the page and heading that hold its text instead of
slicing the file by hand, and a moved section fails with the page and heading it looked for."""

from __future__ import annotations

import re
from pathlib import Path

from configs.schema import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS_DIR = PROJECT_ROOT / "docs"
_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$")


def page_path(name: str) -> Path:
    """`README.md`, or a topic page by its file name in docs/ (`deploy.md`)."""
    return README if name == README.name else DOCS_DIR / name


def read_page(name: str) -> str:
    return page_path(name).read_text()


def topic_pages() -> list[Path]:
    """The topic pages the README indexes: docs/*.md (design notes and results live deeper)."""
    return sorted(DOCS_DIR.glob("*.md"))


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, title, line index) of every Markdown heading; `#` lines inside code fences (shell
    comments in a bash block) are not headings."""
    found, in_fence = [], False
    for index, line in enumerate(text.splitlines()):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.match(line)):
            found.append((len(match[1]), match[2], index))
    return found


def section(name: str, title: str) -> str:
    """The text of page `name` under the heading `title` (any level, heading line included), up
    to the next heading of the same or a higher level."""
    text = read_page(name)
    lines = text.splitlines()
    found = headings(text)
    matches = [i for i, (_, heading, _) in enumerate(found) if heading == title]
    assert len(matches) == 1, f"{page_path(name)}: {len(matches)} headings titled {title!r}"
    level, _, start = found[matches[0]]
    end = next((line for lvl, _, line in found[matches[0] + 1:] if lvl <= level), len(lines))
    return "\n".join(lines[start:end]) + "\n"


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
