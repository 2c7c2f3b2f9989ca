"""The documentation site's sources: a quickstart, the public API first, no citation of a file the reader lacks,
and the internal link check `make docs` runs on the built site."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.check_links import broken_links

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PUBLIC = (
    "operators.ccp.CCPExecuteMethodOperator",
    "triggers.ccp.CCPJobTrigger",
    "sensors.ccp.CCPJobSensor",
    "hooks.ccp.CCPHook",
    "hooks.ccp.CCPAsyncHook",
    "links.CCPExecutionLink",
    "connection.CCPConnectionSettings",
)


def test_the_quickstart_page_opens_the_guides_with_the_readme_quick_start() -> None:
    toctree = (DOCS / "index.md").read_text().split(":caption: Guides", 1)[1]
    assert toctree.split()[0] == "quickstart"
    page = (DOCS / "quickstart.md").read_text()
    start, end = re.findall(r':(?:start-after|end-before): "(.*)"', page)
    readme = (ROOT / "README.md").read_text()
    assert readme.index(start) < readme.index("## Quick start") < readme.index("pip install") < readme.index(end)


def test_the_api_reference_opens_with_the_public_surface() -> None:
    directives = re.findall(r"^\.\. (auto\w+):: airflow_provider_ccp\.(\S+)", (DOCS / "api.rst").read_text(), re.M)
    first_module = next(i for i, (kind, _) in enumerate(directives) if kind == "automodule")
    public = [name for kind, name in directives[:first_module] if kind == "autoclass"]
    assert public[0] == PUBLIC[0]
    assert set(PUBLIC) <= set(public)
    # The internal constants (STATE_KEY, LOOKUP_SECONDS, CLOCK_SKEW) come with their module, after all of it.
    internals = [name for kind, name in directives if kind == "automodule"]
    assert internals.index("operators.ccp") > internals.index("exceptions")


def test_the_docs_cite_no_file_that_is_not_in_the_repository() -> None:
    pages = [*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "sandbox" / "README.md", ROOT / "cli" / "README.md"]
    known = {path.name for path in ROOT.rglob("*.md") if ".venv" not in path.parts and "_build" not in path.parts}
    cited = {(page.name, name) for page in pages for name in re.findall(r"`([\w.-]+\.md)`", page.read_text())}
    assert [pair for pair in cited if pair[1] not in known] == []


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"<html><body>{body}</body></html>")
    return tmp_path


def test_the_link_check_reports_a_missing_page_and_a_missing_anchor(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {
            "index.html": '<a href="api.html#CCPHook">ok</a> <a href="_modules/index.html">ok</a>',
            "api.html": '<dt id="CCPHook"></dt><a href="#gone">self</a> <a href="https://example.org/x">out</a>',
            "_modules/index.html": '<a href="time.html">time</a> <a href="../index.html">up</a>',
        },
    )
    assert sorted(broken_links(site)) == [
        "_modules/index.html: time.html (no such file)",
        "api.html: #gone (no anchor #gone)",
    ]


def test_a_site_whose_links_all_lead_somewhere_passes(tmp_path: Path) -> None:
    site = _site(tmp_path, {"index.html": '<a href="a/">a</a> <a name="top"></a><a href="#top">top</a>'})
    (site / "a").mkdir()
    (site / "a" / "index.html").write_text('<a href="../index.html#top">back</a>')
    assert list(broken_links(site)) == []
