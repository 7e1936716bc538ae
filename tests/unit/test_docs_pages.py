"""The README is a first screen and the rest lives in topic pages (docs/*.md): the README stays
short, keeps the two commands CI and a newcomer run, every heading title is unique across the
pages (a citation such as docs/deploy.md "Ports (Kubernetes)" names one section), and every
relative link and anchor between them resolves."""

from __future__ import annotations

import re
from collections import Counter

from configs.schema import PROJECT_ROOT
from tests.docs_pages import (
    README,
    github_anchor,
    headings,
    page_path,
    read_page,
    section,
    topic_pages,
)

README_MAX_LINES = 300
# [text](target) outside code; images included. External links (with a scheme) are not checked.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def all_pages():
    return [README, *topic_pages()]


def test_readme_is_a_first_screen():
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def test_readme_keeps_the_two_commands_and_ci_runs_its_test_command():
    readme = README.read_text()
    assert "```bash\nscripts/run-local.sh\n```" in readme
    assert "```bash\nscripts/test.sh\n```" in readme
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line.startswith("exec ")] == [
        "exec scripts/test.sh"]


def test_readme_indexes_every_topic_page():
    index = section("README.md", "Documentation")
    for page in topic_pages():
        assert f"](docs/{page.name})" in index, page.name


def test_every_topic_page_opens_with_what_it_covers_and_a_link_back():
    for page in topic_pages():
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# ") and lines[1] == "", page.name
        assert "](../README.md)" in lines[2], page.name


def test_no_two_sections_share_a_title():
    titles = Counter(title for page in all_pages() for _, title, _ in headings(page.read_text()))
    assert [title for title, n in titles.items() if n > 1] == []


def test_relative_links_and_anchors_resolve():
    anchors = {page.resolve(): {github_anchor(title) for _, title, _ in headings(page.read_text())}
               for page in all_pages()}
    broken = []
    for page in all_pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page.resolve()
            if not resolved.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in anchors.get(resolved, set()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_error_table_sits_between_its_markers_under_errors():
    errors = section("api.md", "Errors")
    lines = errors.splitlines()
    start = lines.index("<!-- error-table:start -->")
    end = lines.index("<!-- error-table:end -->")
    rows = lines[start + 1:end]
    # One row per error code, generated (tests/unit/test_errors.py checks it equals the output
    # of scripts/render_error_table.py); 405 and Starlette's other statuses are listed too.
    assert rows[0] == "| status | code | type | when |" and rows[1] == "| --- | --- | --- | --- |"
    statuses = {s for row in rows[2:] for s in row.split("|")[1].strip().split(", ")}
    assert statuses == {"400", "401", "403", "404", "405", "408", "413", "415", "429", "500",
                        "503", "504", "other"}
    assert read_page("api.md").count("<!-- error-table:start -->") == 1


def test_page_path_names_the_readme_and_the_topic_pages():
    assert page_path("README.md") == README
    assert page_path("deploy.md") == PROJECT_ROOT / "docs" / "deploy.md"
