"""`make docs`: every internal link of the built site leads somewhere.

    python -m scripts.check_links docs/_build/html

Sphinx's linkcheck follows external links, which this machine cannot reach; this reads the built
HTML instead and checks each relative ``href`` and ``src``: the file exists, and the ``#fragment``, if
any, is an ``id`` (or ``name``) in it. Exit 1 with one line per broken link.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.anchors.add(value)
            elif name in ("href", "src"):
                self.links.append(value)


@cache
def _read(page: Path) -> _Page:
    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parsed


def broken_links(site: Path) -> Iterator[str]:
    """``page: link (why)`` for each internal link of ``site`` that leads nowhere."""
    for page in sorted(site.rglob("*.html")):
        for link in _read(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue  # external: not ours to check offline
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = page.relative_to(site)
            if not target.is_file():
                yield f"{where}: {link} (no such file)"
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _read(target).anchors:
                yield f"{where}: {link} (no anchor #{parts.fragment})"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m scripts.check_links BUILT_HTML_FOLDER", file=sys.stderr)
        return 2
    broken = list(broken_links(Path(args[0])))
    for line in broken:
        print(f"broken link: {line}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
