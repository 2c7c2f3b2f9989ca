"""Sphinx configuration of the airflow-provider-ccp documentation (``make docs``).

Sphinx rather than MkDocs: Airflow's own providers document themselves with Sphinx, and the
provider's docstrings are reST field lists (``:param x:``) that autodoc renders as they are.
The guides stay Markdown (MyST), so they read the same on a repository host as on the site.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_ccp import __version__

project = "airflow-provider-ccp"
author = "The airflow-provider-ccp authors"
copyright = "2026, " + author
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Relative links between the guides become checked cross-references: a broken one is a warning,
# and `make docs` turns every warning into an error.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# BaseOperator's and BaseHook's own docstrings are Airflow's to document, not ours.
autodoc_inherit_docstrings = False
autodoc_default_options = {"members": True, "show-inheritance": True}

# A name a module imports (a re-export) is documented, and its source shown, where it is defined: followed,
# viewcode would link that source to an anchor in the importing module that the API page never writes.
viewcode_follow_imported_members = False

html_theme = "alabaster"
html_title = f"airflow-provider-ccp {release}"
html_static_path: list[str] = []

# The guides show document shapes with "…" in them: illustrations, not JSON to lex.
suppress_warnings = ["misc.highlighting_failure"]


def _skip_what_others_define(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """A class attribute holding ``time.sleep`` (an injectable clock) is the standard library's to document:
    documented here, viewcode would link its source to a page it never writes."""
    module = getattr(obj, "__module__", None)
    if callable(obj) and isinstance(module, str) and module.split(".")[0] != "airflow_provider_ccp":
        return True
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-skip-member", _skip_what_others_define)
