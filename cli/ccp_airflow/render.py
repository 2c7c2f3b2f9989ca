"""What the CLI prints: rich tables for people, plain JSON (``--json``) for scripts.

Every string that reaches the terminal goes through ``clean``: a server's method titles, job
messages, archive entry names and error details could otherwise clear the screen, move the
cursor, fake a hyperlink (OSC 8) or reverse the text's direction. JSON needs no cleaning: the
encoder escapes every control character (``\u001b``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from airflow_provider_ccp.descriptions import MethodInput
from airflow_provider_ccp.protocol import StatusInfo
from ccp_airflow.dag_template import mapping, method_inputs

__all__ = [
    "console",
    "matches",
    "methods_table",
    "inputs_table",
    "outputs_table",
    "method_view",
    "job_view",
    "jobs_table",
    "PIPE_WIDTH",
    "STATUS_STYLES",
]

#: Wide enough that ids and URLs are not wrapped when the output goes to a file or a pipe.
PIPE_WIDTH = 200
#: Terminal escape sequences: OSC (hyperlinks, titles) up to BEL or ST, CSI (cursor, colours, clear),
#: DCS/SOS/PM/APC strings, two-byte escapes, and their one-byte C1 forms.
ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
#: Control characters left once the sequences are gone (tab and newline stay), and the Unicode
#: direction overrides that make text read differently from what it is.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
STATUS_STYLES = {"successful": "green", "failed": "red", "dismissed": "red", "running": "cyan", "accepted": "yellow"}


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(file=stream, width=PIPE_WIDTH if wide else None, highlight=False)


def clean(value: Any) -> str:
    """``value`` as text a terminal shows as it is: escape sequences and control characters removed."""
    return CONTROL.sub("", ESCAPE_SEQUENCE.sub("", str(value)))


def plain(value: Any) -> Text:
    """Cleaned text for rich, never read as markup (a ``[`` in a path or message is just a bracket)."""
    return Text(clean(value))


def emit(
    view: RenderableType | str | None = None, *, data: Any = None, as_json: bool = False, stderr: bool = False
) -> None:
    """Everything a command prints goes through here.

    With ``--json`` (``as_json``): ``data`` as one JSON document on stdout, for scripts (JSON escapes
    control characters). Otherwise ``view`` for people, on stdout or stderr; a string is printed as
    plain text, never read as rich markup, since it may carry the server's words.
    """
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    elif view is not None:
        console(stderr).print(plain(view) if isinstance(view, str) else view)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    return clean(value)


def matches(method: Mapping[str, Any], search: str) -> bool:
    """Case-insensitive search in the fields a person would look at."""
    haystack = " ".join(_text(method.get(key)) for key in ("id", "title", "description", "keywords"))
    return search.lower() in haystack.lower()


def methods_table(methods: Iterable[Mapping[str, Any]]) -> Table:
    table = Table("id", "title", "version", "keywords", title="CCP Methods")
    for method in methods:
        table.add_row(*(Text(_text(method.get(key))) for key in ("id", "title", "version", "keywords")))
    return table


def _notes(item: MethodInput) -> str:
    notes = ["required" if item.required else "optional"]
    notes += [note for note, flag in (("read-only", item.read_only), ("secret", item.secret)) if flag]
    if item.multiple:
        notes.append("multiple")
    return ", ".join(notes)


def _default(item: MethodInput) -> str:
    if not item.has_default:
        return ""
    return "***" if item.secret else json.dumps(item.default)


def inputs_table(method: Mapping[str, Any]) -> Table:
    table = Table("input", "title", "type", "format", "default", "enum", "notes", "description", title="Inputs")
    for item in method_inputs(method):
        enum = _text(list(item.enum))
        cells = (item.id, item.title, item.type, item.format, _default(item), enum, _notes(item), item.description)
        table.add_row(*(Text(_text(cell)) for cell in cells))
    return table


def outputs_table(method: Mapping[str, Any]) -> Table:
    table = Table("output", "title", "media type", "description", title="Outputs")
    for output_id, value in mapping(method.get("outputs")).items():
        spec = mapping(value)
        schema = mapping(spec.get("schema"))
        cells = (output_id, spec.get("title"), schema.get("contentMediaType"), spec.get("description"))
        table.add_row(*(Text(_text(cell)) for cell in cells))
    return table


def method_view(method: Mapping[str, Any]) -> RenderableType:
    heading = Text.assemble(
        (_text(method.get("title") or method.get("id")), "bold"),
        f"  id {_text(method.get('id'))}, version {_text(method.get('version')) or 'unknown'}",
    )
    parts: list[RenderableType] = [heading]
    if method.get("description"):
        parts.append(Text(_text(method.get("description"))))
    if method.get("keywords"):
        parts.append(Text(f"keywords: {_text(method.get('keywords'))}"))
    parts.append(inputs_table(method))
    if mapping(method.get("outputs")):
        parts.append(outputs_table(method))
    else:
        parts.append(Text("Outputs: none declared (CCP sends output.zip with whatever the Method wrote)"))
    return Group(*parts)


def _status_text(word: str) -> Text:
    return Text(clean(word), style=STATUS_STYLES.get(word, ""))


def job_view(status: StatusInfo) -> Table:
    table = Table("field", "value", show_header=False, title=plain(f"CCP job {status.job_id}"))
    for key, value in status.to_dict().items():
        if value is not None and value != "":
            table.add_row(key, _status_text(value) if key == "status" else Text(_text(value)))
    return table


def jobs_table(statuses: Iterable[StatusInfo], title: str = "CCP jobs") -> Table:
    statuses = list(statuses)
    table = Table(title=title)
    # Whole ids, never an ellipsis: they are what `jobs status` and `jobs outputs` take.
    longest = max((len(status.job_id) for status in statuses), default=6)
    table.add_column("job id", no_wrap=True, min_width=longest)
    for name in ("status", "method", "created", "updated", "message"):
        table.add_column(name)
    for status in statuses:
        row = status.to_dict()
        table.add_row(
            plain(status.job_id),
            _status_text(status.status),
            *(Text(_text(row[key])) for key in ("process_id", "created", "updated", "message")),
        )
    return table
