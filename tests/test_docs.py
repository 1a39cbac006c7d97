"""The front door stays a front door and the docs stay connected: README.md at most 200 lines, every page
of docs/ linked from it, every relative link in README.md and docs/*.md pointing at a file (and heading)
that exists, and `make help` listing every phony target of the Makefile."""

import re
import subprocess

import pytest

from tests.stack import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def relative_links(page) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:", link)]


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / link.split("#")[0]).resolve() for link in relative_links(ROOT / "README.md")}
    for page in PAGES[1:]:
        assert page.resolve() in linked, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve(page):
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link}"
        if anchor:
            assert anchor in anchors(target), f"{page.name}: {link}"


def test_make_help_lists_every_phony_target():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.M).group(1).replace("\\\n", " ").split()
    shown = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    listed = {target for line in shown.splitlines() for target in line.split("  ")[1].split()}
    assert len(phony) > 20 and set(phony) <= listed, set(phony) - listed


def test_where_to_start_reading_names_files_that_exist_at_about_their_size():
    """README's reading path says each file's size; a file that moved or grew past it makes this fail."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where to start reading", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`([\w/.]+\.(?:py|js))` \((\d+)", section)
    assert len(named) >= 15, named
    folder = ""
    for name, size in named:  # a bare name is in the folder of the last path named before it
        folder = name.rsplit("/", 1)[0] if "/" in name else folder
        path = ROOT / (name if "/" in name else f"{folder}/{name}")
        assert path.exists(), name
        lines = len(path.read_text().splitlines())
        assert abs(lines - int(size)) <= 0.25 * int(size) + 10, f"{name}: {lines} lines, README says {size}"
