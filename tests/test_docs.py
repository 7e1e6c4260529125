"""Comments and docs cite the architecture write-up by section (docs/architecture.md §N): every cited section
exists, and nothing cites the outside specification it was written from ("spec N")."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
SOURCES = [ROOT / "README.md"] + [p for pkg in ("lowformer_common", "search_spaces", "measured", "predictors", "nas",
                                                 "tests", "docs")
                                   for p in sorted((ROOT / pkg).rglob("*")) if p.suffix in (".py", ".md")]
CITE = re.compile(r"docs/architecture\.md[^§\n]{0,40}((?:§\d+(?:\.\d+)?(?:-§\d+)?(?:,\s*)?)+)")


def _sections() -> set[str]:
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", DOC.read_text(encoding="utf-8"), flags=re.M)
    return set(heads)


def test_every_cited_section_exists():
    sections = _sections()
    assert {"1", "2.4", "3.1", "11", "12"} <= sections
    cited = {}
    for path in SOURCES:
        for m in CITE.finditer(path.read_text(encoding="utf-8")):
            for ref in re.findall(r"§(\d+(?:\.\d+)?)", m.group(1)):
                cited.setdefault(ref, []).append(path.relative_to(ROOT).as_posix())
    assert len(cited) >= 10, cited  # the code does cite it
    missing = {ref: where for ref, where in cited.items() if ref not in sections}
    assert not missing, f"cited sections that docs/architecture.md lacks: {missing}"


def test_nothing_cites_the_outside_specification():
    stale = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\bspec(?:'s)? (?:\d|sections?\b)|\bspecification'?s?\b", line) and p != pathlib.Path(__file__)]
    assert not stale, stale


# The top-level README is a guide; figures live in docs/results.md and the packages' READMEs.
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
          *[ROOT / pkg / "README.md" for pkg in ("search_spaces", "measured", "predictors", "nas")]]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: pathlib.Path) -> set[str]:
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
    heads = re.findall(r"^#{1,6} (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_is_a_short_guide():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert "## Contents" in text
    assert not re.search(r"x86_64-[a-z0-9-]+-\d+c-\d+g", text), "no host's device id in the README"


def test_every_relative_link_of_the_guides_resolves():
    broken = []
    for doc in GUIDES:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken
