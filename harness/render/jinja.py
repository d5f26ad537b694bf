"""The Jinja2 environment the HTML and Markdown reports are rendered with.

How it works. Each report's layout is a template in ``harness/render/templates/``,
named ``<report>.<format>.j2`` (``certification.html.j2``,
``fidelity.md.j2``...), loaded from the installed package (package data
``harness/render/templates/*.j2``). ``render(name, **context)`` renders one with
the one environment, made on first use:

- ``*.html.j2`` templates autoescape: every ``{{ value }}`` is HTML-escaped
  unless it is ``markupsafe.Markup``. So does any template that is neither
  HTML nor Markdown, to fail safe.
- ``*.md.j2`` templates do not (Jinja2 has no Markdown escaping), so every
  value that carries data goes through a filter: ``md`` (``md_escape``) for
  text and table cells, ``md_code`` for a value shown as a code span and
  Jinja2's ``urlencode`` for a link's target. A test checks that no ``{{ }}``
  of a Markdown template goes without one.
- A name the template uses but the context lacks raises (``StrictUndefined``)
  instead of printing nothing.
- A block tag alone on its line takes the whole line (``trim_blocks``,
  ``lstrip_blocks``), so ``{% for %}`` lines leave no blank lines; a block
  tag that ends a line of output is written ``{% endif +%}`` to keep the
  line's newline. A template's last newline is kept.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_MD_CHARACTERS = str.maketrans(
    {
        "\\": "\\\\",  # else a backslash in the data would eat the escape of a following |
        "|": "\\|",  # a table cell's delimiter
        "&": "&amp;",  # Markdown passes HTML through: no entity, tag or comment may start
        "<": "&lt;",
        ">": "&gt;",
    }
)
_NEWLINE = re.compile(r"\r\n|\r|\n")
_BACKTICKS = re.compile(r"`+")


def md_escape(value: object) -> str:
    """``value`` as Markdown text that stays one table cell, or one line, and adds no HTML.

    Escapes ``|`` (and ``\\``) with a backslash, ``&``, ``<`` and ``>`` as
    HTML entities, and turns each line break into ``<br>``. Markdown's own
    emphasis and code marks (``*``, ``_``, backticks) are left alone: they
    only format, and the reports' notes use backticks on purpose.
    """
    return _NEWLINE.sub("<br>", str(value).translate(_MD_CHARACTERS))


def md_code(value: object) -> str:
    """``value`` as one Markdown code span, shown literally (outside tables).

    The fence is one backtick longer than the longest run of backticks in
    the value, padded with a space where Markdown would otherwise eat one
    or join the fence; line breaks become spaces.
    """
    text = _NEWLINE.sub(" ", str(value))
    fence = "`" * (1 + max((len(run) for run in _BACKTICKS.findall(text)), default=0))
    edge = text[:1] + text[-1:]
    spaced = edge == "  " and text.strip(" ") != ""
    pad = " " if "`" in edge or spaced else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@cache
def environment() -> Environment:
    """The environment, made once."""
    env = Environment(
        loader=PackageLoader("harness.render", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), disabled_extensions=("md.j2",), default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["md_code"] = md_code
    return env


def render(name: str, **context: Any) -> str:
    """Render template ``name`` of ``harness/render/templates/`` with ``context``."""
    return environment().get_template(name).render(**context)
