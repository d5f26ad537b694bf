"""The ``swarmtwin`` command line: parse arguments, load the input, call the library.

One module per command group, each with the command functions and a
``register(sub, common)`` that adds their parsers:

- ``run``: ``run``, ``check`` (and its deprecated alias ``validate``), ``history``;
- ``serve``: ``coordinator`` and ``agents``, a system started by hand;
- ``portal``: ``serve``, the web portal (and the MCP server over HTTP);
- ``mcp``: ``mcp``, the MCP server over stdio;
- ``model``: ``calibrate`` and ``validate-model``;
- ``regress``: ``regress`` and ``baseline update``;
- ``certify``: ``certify``;
- ``bench``: ``bench``.

``options`` holds the exit codes and the argument types every command shares,
``output`` the consoles and the progress bar, and ``main`` builds the parser and
maps exceptions to exit codes (its docstring lists them).
"""

from harness.cli.main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
