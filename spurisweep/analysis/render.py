"""One renderer from a table (a header, rows of text, a title and notes) to a rich Table, markdown, CSV,
JSON or HTML, used by report, paper, diagnostics and plots.

CSV and JSON are long form: a table carries `records` (one dict per value, with every field a script may
want) next to the display rows. rich is imported inside the functions that build rich objects.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, suggest

FORMATS = ("table", "markdown", "csv", "json", "html")


@dataclass
class Table:
    """A table as shown, plus its long form. The styling fields only affect fmt=table (rich)."""

    header: list[str]
    rows: list[list[str]]
    title: str = ""
    notes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] | None = None  # long form for csv/json; default: the rows by header
    meta: dict[str, Any] = field(default_factory=dict)  # json fields between "title" and "cells"
    justify: list[str] | None = None  # per column: "left" / "right" (default left)
    row_styles: list[str | None] | None = None
    end_sections: list[bool] | None = None  # a rule below these rows
    page_title: str = "spurisweep report"  # the HTML page's <title>

    def long_form(self) -> list[dict[str, Any]]:
        if self.records is not None:
            return self.records
        return [dict(zip(self.header, r, strict=True)) for r in self.rows]


def render(t: Table, fmt: str = "table") -> str | Any:
    """The table as a rich renderable (fmt=table) or a string (markdown, csv, json, html)."""
    if fmt == "json":
        return to_json({"title": t.title, **t.meta, "cells": t.long_form(), "notes": t.notes})
    if fmt == "csv":
        return to_csv(t.long_form())
    if fmt == "markdown":
        return to_markdown(t)
    if fmt == "html":
        return html_page(t.page_title, html_table(t.title, t.header, t.rows, t.notes))
    if fmt != "table":
        raise ConfigError(suggest(fmt, list(FORMATS)), field="--format")
    from rich.console import Group
    from rich.text import Text

    return Group(rich_table(t), *[Text(n, style="italic") for n in t.notes])


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)


def to_csv(records: list[dict[str, Any]]) -> str:
    """Records -> CSV with a header row; the columns are every key, in order of first appearance."""
    buf = io.StringIO()
    if records:
        names = list(dict.fromkeys(k for rec in records for k in rec))
        w = csv.DictWriter(buf, fieldnames=names)
        w.writeheader()
        w.writerows(records)
    return buf.getvalue()


def markdown_grid(header: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def to_markdown(t: Table, heading: str = "**{}**", note: str = "\n_{}_", empty_grid: bool = True) -> str:
    """Heading line, a blank line, the grid (left out when there are no rows unless `empty_grid`), and one
    line per note, each formatted by its template."""
    lines = [heading.format(t.title), ""]
    if t.rows or empty_grid:
        lines += markdown_grid(t.header, t.rows)
    return "\n".join(lines + [note.format(n) for n in t.notes])


def rich_table(t: Table, title_justify: str = "center", overflow: str = "ellipsis") -> Any:
    """A rich Table; every cell is a Text, so brackets in stored names are never read as markup."""
    from rich.table import Table as RichTable
    from rich.text import Text

    table = RichTable(title=Text(t.title), title_justify=title_justify)
    for i, h in enumerate(t.header):
        justify = t.justify[i] if t.justify else "left"
        table.add_column(Text(h), justify=justify, overflow=overflow)
    for i, r in enumerate(t.rows):
        style = t.row_styles[i] if t.row_styles else None
        end = t.end_sections[i] if t.end_sections else False
        table.add_row(*map(Text, r), style=style, end_section=end)
    return table


def html_table(
    caption: str, hdr: list[str], body: list[list[str]], notes: list[str] | tuple[str, ...] = ()
) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in hdr)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>\n" for r in body)
    foot = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    return f"<h3>{html.escape(caption)}</h3>\n<table>\n<tr>{th}</tr>\n{trs}</table>\n{foot}\n"


def html_page(title_text: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right} td:first-child,th:first-child"
        "{text-align:left} th{background:#eee} .note{color:#555;font-style:italic} img{max-width:100%}"
    )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title_text)}</title>"
        f"<style>{style}</style></head>\n<body>\n{body}</body></html>\n"
    )
