"""Reading a scenario file: a safe YAML loader with two strict rules.

The loader is PyYAML's ``SafeLoader`` plus two changes: a mapping with the
same key twice is an error (plain YAML keeps the last one silently), and
``1e3`` is read as a number as in YAML 1.2 (PyYAML's 1.1 rules make it a
string). Problems become ``ScenarioError`` with the field ``(file)`` for an
unreadable file or ``(yaml)``, with line and column, for broken YAML.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml

from harness.scenario.errors import ScenarioError


class _ScenarioLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys and reads ``1e3`` as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping's key must be a plain value", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class _NoAliasLoader(_ScenarioLoader):
    """The scenario loader, refusing aliases: for text from the network, where a few
    nested aliases (a "billion laughs") would make validation walk an exponential tree."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted", mark)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def read_yaml(path: Path, source: str) -> Any:
    """The parsed YAML in ``path``; ``ScenarioError`` (field ``(file)`` or ``(yaml)``) if not."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "(file)", "file not found") from None
    except UnicodeDecodeError:
        raise ScenarioError(source, "(file)", "expected UTF-8 text") from None
    except OSError as exc:
        raise ScenarioError(source, "(file)", f"cannot read the file: {exc.strerror}") from None
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str, aliases: bool = True) -> Any:
    """``text`` parsed as a scenario file is; ``ScenarioError`` (field ``(yaml)``) if it
    is not YAML. ``aliases=False`` refuses aliases (text that came over the network)."""
    loader = _ScenarioLoader if aliases else _NoAliasLoader
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f"line {line}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(source, "(yaml)", f"{where}{problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, "(yaml)", f"not valid YAML: {exc}") from None
