"""The chart sends users to the project's docs pages (NOTES.txt after install, the comments of
values.yaml, the schema's descriptions, the alerts' runbook_url): every page and anchor it names
must exist, or the user lands on GitHub's 404 or at the top of a long page."""

from __future__ import annotations

import re

import pytest

from conftest import CHART_DIR, REPO

# A docs page, as a repository path or inside a GitHub URL of this repository, with an optional
# anchor: docs/policy.md, docs/monitoring.md#runbook-velerohookinjectordown.
DOCS_REF = re.compile(r"\bdocs/([\w.-]+\.md)(?:#([\w-]+))?")
CHART_TEXTS = sorted(
    [CHART_DIR / "templates" / "NOTES.txt", CHART_DIR / "values.yaml",
     CHART_DIR / "values.schema.json", CHART_DIR / "files" / "prometheus-rules.yaml"]
    + list(CHART_DIR.glob("README.md"))
)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, inline code marks and punctuation dropped,
    each space a hyphen (so "`audit --apply`" keeps both hyphens of --apply)."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
    found, in_fence = set(), False
    for line in page.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(github_slug(m.group(1)))
    found.update(re.findall(r'<a (?:id|name)="([^"]+)"', page))
    return found


def test_the_slug_rule_matches_the_anchors_the_docs_link_to():
    assert github_slug("Hooks for running pods: reconciler and `audit --apply`") == \
        "hooks-for-running-pods-reconciler-and-audit---apply"
    assert github_slug("failurePolicy: Ignore (default) or Fail") == "failurepolicy-ignore-default-or-fail"


@pytest.mark.parametrize("path", CHART_TEXTS, ids=lambda p: str(p.relative_to(CHART_DIR)))
def test_every_docs_page_the_chart_names_exists(path):
    refs = DOCS_REF.findall(path.read_text())
    for page, anchor in refs:
        target = REPO / "docs" / page
        assert target.is_file(), f"{path.name} names docs/{page}, which does not exist"
        if anchor:
            assert anchor in anchors(target.read_text()), \
                f"{path.name} names docs/{page}#{anchor}, but that page has no such heading or anchor"


def test_the_chart_points_users_to_the_docs():
    notes = (CHART_DIR / "templates" / "NOTES.txt").read_text()
    assert DOCS_REF.search(notes), "NOTES.txt names no docs page"
    rules = (CHART_DIR / "files" / "prometheus-rules.yaml").read_text()
    assert "README.md" not in rules, "runbook_url still points at the README"
