"""One renderer from a table (a header, rows of text, a title and notes) to a rich Table, a list, markdown,
CSV, JSON or HTML, used by report, paper, diagnostics, plots and the CLI's own tables.

A terminal of any width: fmt=table gives a renderable that lays itself out at the width it is drawn at.
Every column is at least as wide as its longest word, so a name is never cut inside a word; a table whose
columns cannot all be that wide, and a table marked `prose` (sentences in its cells) on a terminal
narrower than LIST_BELOW columns, is drawn as a list instead: one block per row, one `column: value` line
per cell, wrapped between words. A table with no rows is one line.

CSV and JSON are long form: a table carries `records` (one dict per value, with every field a script may
want) next to the display rows. rich is imported inside the functions that build rich objects.
"""

from __future__ import annotations

import csv
import html
import io
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, suggest

FORMATS = ("table", "markdown", "csv", "json", "html")
#: fmt=list: the list layout whatever the width (`fidelity --format list`)
LIST = "list"
#: a prose table is a list on a terminal narrower than this many columns
LIST_BELOW = 120
#: what rich adds around the cells of a table drawn with its default box: one space each side of every
#: cell, and one border character between and around the columns
_PAD, _BORDER = 2, 1


@dataclass
class Table:
    """A table as shown, plus its long form. The styling fields only affect the text formats."""

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
    prose: bool = False  # sentences in its cells: a list below LIST_BELOW columns
    heading_columns: int = 1  # the list layout: the leading columns that head each row's block
    empty: str = ""  # the one line a table without rows prints (default: '<title's head>: nothing to show')
    cell_styles: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> a rich style

    def long_form(self) -> list[dict[str, Any]]:
        if self.records is not None:
            return self.records
        return [dict(zip(self.header, r, strict=True)) for r in self.rows]

    def empty_line(self) -> str:
        """What a table without rows prints: one line."""
        head = self.title.split(": ", 1)[0].strip() or "the table"
        return self.empty or f"{head}: nothing to show"


def render(t: Table, fmt: str = "table") -> str | Any:
    """The table as a rich renderable (fmt=table, laid out at the width it is drawn at) or a string
    (list, markdown, csv, json, html)."""
    if fmt == "json":
        return to_json({"title": t.title, **t.meta, "cells": t.long_form(), "notes": t.notes})
    if fmt == "csv":
        return to_csv(t.long_form())
    if fmt == "markdown":
        return to_markdown(t)
    if fmt == "html":
        return html_page(t.page_title, html_table(t.title, t.header, t.rows, t.notes))
    if fmt == LIST:
        return to_list(t, terminal_width())
    if fmt != "table":
        raise ConfigError(suggest(fmt, list(FORMATS)), field="--format")
    from rich.console import Group
    from rich.text import Text

    if not t.rows:
        return Text(t.empty_line())
    return Group(rich_table(t), *[Text(n, style="italic") for n in t.notes])


def terminal_width() -> int:
    """The width rich draws at: COLUMNS, else the terminal's, else 80."""
    from rich.console import Console

    return Console().width


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


# ---------------------------------------------------------------------------------------------- widths
def _cell_len(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


def _longest_word(text: str) -> int:
    return max((_cell_len(w) for w in text.split()), default=0)


def column_widths(t: Table, width: int) -> list[int] | None:
    """Each column's width in a table `width` characters wide that cuts no word, or None when there is
    none (a column narrower than its longest word): columns take their natural width when they all fit,
    else their longest word plus a share of the room left, in proportion to how much they would wrap."""
    columns = list(zip(t.header, *t.rows, strict=True))
    natural = [max(_cell_len(x) for x in col) for col in columns]
    least = [max(_longest_word(x) for x in col) for col in columns]
    room = width - len(columns) * (_PAD + _BORDER) - _BORDER
    if sum(natural) <= room:
        return natural
    if sum(least) > room:
        return None
    spare, wants = room - sum(least), [n - m for n, m in zip(natural, least, strict=True)]
    widths = [m + spare * w // sum(wants) for m, w in zip(least, wants, strict=True)]
    return widths


def table_width(widths: list[int]) -> int:
    return sum(widths) + len(widths) * (_PAD + _BORDER) + _BORDER


def as_list_layout(t: Table, width: int) -> bool:
    """Whether the table is drawn as a list at `width` columns."""
    return (t.prose and width < LIST_BELOW) or column_widths(t, width) is None


class Adaptive:
    """A table that lays itself out at the width rich draws it at: a grid of columns that cut no word, a
    list (below LIST_BELOW columns for a prose table, or where no grid fits), or one line without rows."""

    def __init__(self, table: Table, title_justify: str = "center"):
        self.table = table
        self.title_justify = title_justify

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        t, width = self.table, options.max_width
        if not t.rows:
            yield Text(t.empty_line())
            return
        widths = column_widths(t, width)
        if widths is None or (t.prose and width < LIST_BELOW):
            yield from list_texts(t, width)
            return
        grid = _grid(t, widths)
        if t.title and _cell_len(t.title) <= table_width(widths):
            grid.title, grid.title_justify = Text(t.title), self.title_justify
        elif t.title:
            yield Text(t.title)
        yield grid


def _grid(t: Table, widths: list[int]) -> Any:
    """The rich Table, each column `widths` wide; every cell is a Text, so brackets in stored names are
    never read as markup."""
    from rich.table import Table as RichTable
    from rich.text import Text

    table = RichTable()
    for i, (h, w) in enumerate(zip(t.header, widths, strict=True)):
        justify = t.justify[i] if t.justify else "left"
        table.add_column(Text(h), justify=justify, width=w, overflow="fold")
    for i, r in enumerate(t.rows):
        style = t.row_styles[i] if t.row_styles else None
        end = t.end_sections[i] if t.end_sections else False
        cells = [Text(x, style=t.cell_styles.get((i, j), "")) for j, x in enumerate(r)]
        table.add_row(*cells, style=style, end_section=end)
    return table


def rich_table(t: Table, title_justify: str = "center", overflow: str = "fold") -> Any:
    """The table as a renderable laid out at the width it is drawn at (Adaptive), its notes left to the
    caller. `overflow` is kept for callers that name it: no column is narrower than its longest word."""
    del overflow
    return Adaptive(t, title_justify)


# ---------------------------------------------------------------------------------------------- list layout
def _wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """Lines of at most `width` characters, broken between words only (a name with hyphens stays whole)."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def list_blocks(t: Table, width: int) -> list[tuple[list[str], str | None]]:
    """The list layout as blocks of lines, each with its row's style: the title, then per row its heading
    (the first `heading_columns` values) and one `column: value` line per other cell with a value (not
    blank, not '-')."""
    blocks: list[tuple[list[str], str | None]] = []
    if t.title:
        blocks.append((_wrap(t.title, width), None))
    k = max(1, min(t.heading_columns, len(t.header)))
    for i, r in enumerate(t.rows):
        style = t.row_styles[i] if t.row_styles else None
        head = "  ".join(x for x in r[:k] if x)
        lines = _wrap(head, width, "- ", "  ")
        for h, x in zip(t.header[k:], r[k:], strict=True):
            if x.strip() not in ("", "-"):  # nothing to say: left out of the list
                lines += _wrap(f"{h}: {x}", width, "    ", "      ")
        blocks.append((lines, style))
    return blocks


def list_texts(t: Table, width: int) -> list[Any]:
    """The list layout as rich Texts (a row's style on its block)."""
    from rich.text import Text

    return [Text("\n".join(lines), style=style or "") for lines, style in list_blocks(t, width)]


def to_list(t: Table, width: int) -> str:
    """The list layout as text, notes wrapped below; one line without rows."""
    if not t.rows:
        return t.empty_line()
    lines = [ln for block, _ in list_blocks(t, width) for ln in block]
    lines += [ln for n in t.notes for ln in _wrap(n, width)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- html
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
