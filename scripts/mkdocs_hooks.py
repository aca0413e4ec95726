"""MkDocs hook (mkdocs.yml `hooks:`): the site's home page is README.md, so the two never drift apart.

docs/index.md is a placeholder; at build time its text becomes the README's, with the README's links into
docs/ ("docs/cli.md", "docs/img/search-page.png") made relative to the docs folder ("cli.md", "img/...").
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS_LINK = re.compile(r"\]\(docs/")


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    return DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
