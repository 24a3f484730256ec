"""A finished report view: sections of tables, figures and text, ready to lay out.

The audit layer decides what a report says (which checks, which figures: each check kind draws
its own) and builds one of these; :func:`interp_audit.output.html.render` only lays it out, so
the renderer knows numbers, text and figures, never audits. Everything here is data: strings are
shown as text (the renderer escapes them), figures are plotly figure JSON (``{"data": [...],
"layout": {...}}``, whose strings the renderer also escapes), and the two kinds of markup a view
may carry (:class:`Svg`, :class:`Markup`) must come from code that escapes its own text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "Badge",
    "Block",
    "Cell",
    "Columns",
    "Details",
    "Figure",
    "Grid",
    "KeyValues",
    "Link",
    "Markup",
    "Pre",
    "ReportView",
    "Section",
    "Svg",
    "Table",
    "Text",
]

#: How a verdict badge looks: pass / fail / inconclusive, ``allowed`` (an admissible path,
#: reported not tested) and ``info`` (no verdict).
BadgeKind = Literal["pass", "fail", "inconclusive", "allowed", "info"]


@dataclass(frozen=True)
class Badge:
    """A verdict shown as a coloured label."""

    kind: BadgeKind
    text: str = ""  # default: the kind itself


@dataclass(frozen=True)
class Link:
    """Text linking to an anchor of the same page (``#anchor``)."""

    text: str
    anchor: str


#: A table cell: text, a badge, or an in-page link.
Cell: TypeAlias = str | Badge | Link


@dataclass(frozen=True)
class Text:
    """A paragraph; ``small`` for secondary notes."""

    text: str
    small: bool = False


@dataclass(frozen=True)
class Table:
    """Rows of cells under column names. ``numeric`` columns are right-aligned and never
    wrap, nor do ``nowrap`` ones (keep them short); every other column wraps, so a table never
    needs more than the page's width."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: frozenset[int] = frozenset()
    nowrap: frozenset[int] = frozenset()
    caption: str = ""
    compact: bool = False  # one short line per row (summary tables)
    groups: tuple[tuple[int, Cell], ...] = ()  # (row index, heading): a heading row before it

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table row {i} has {len(row)} cells for {len(self.columns)} columns"
                )


@dataclass(frozen=True)
class KeyValues:
    """A two-column table of names and values (a record)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Figure:
    """A plotly figure as JSON (``fig.to_plotly_json()``): drawn by the inlined plotly.js."""

    figure: dict[str, Any]
    caption: str = ""


@dataclass(frozen=True)
class Svg:
    """An SVG drawing (e.g. the causal graph), made by code that escapes its own text."""

    markup: str
    caption: str = ""


@dataclass(frozen=True)
class Markup:
    """HTML made by a display method that escapes its own data (e.g. a feature card)."""

    html: str


@dataclass(frozen=True)
class Pre:
    """Preformatted text (a spec as written); long lines scroll inside the block."""

    text: str


@dataclass(frozen=True)
class Columns:
    """Blocks side by side; they stack when the page is too narrow for both."""

    parts: tuple[Block, ...]


@dataclass(frozen=True)
class Grid:
    """Blocks in as many equal columns as fit (figures of located effects)."""

    parts: tuple[Block, ...]
    min_width_px: int = 460


@dataclass(frozen=True)
class Details:
    """Collapsible blocks under a one-line summary."""

    summary: str
    parts: tuple[Block, ...]
    open: bool = False


Block: TypeAlias = Text | Table | KeyValues | Figure | Svg | Markup | Pre | Columns | Grid | Details


@dataclass(frozen=True)
class Section:
    """A titled part of the report; ``badge`` beside the title, ``anchor`` for links."""

    title: str
    parts: tuple[Block, ...]
    anchor: str = ""
    badge: Badge | None = None
    level: int = 2  # 2 = a main section, 3 = within the previous main section


@dataclass(frozen=True)
class ReportView:
    """A whole report: title and overall verdict, sections in order, a footer.

    ``data_digest`` ties the page to the data it was built from (``<meta
    name='interp-audit-data'>``, checked when a run folder is read back).
    """

    title: str
    verdict: Badge
    sections: tuple[Section, ...]
    data_digest: str = ""
    intro: tuple[Block, ...] = ()
    footer: tuple[str, ...] = field(default_factory=tuple)
