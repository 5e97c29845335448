"""``.. cli-help:: module:function``: the help text of an :mod:`argparse` parser, as a literal block.

The parser is built by calling ``function`` (no arguments); ``:subcommand: NAME`` shows the help of one
sub-command instead of the top-level one. The help is rendered at a fixed width, so the page does not
depend on the terminal that built it.
"""

from __future__ import annotations

import argparse
import importlib
import os

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

WIDTH = "100"


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse has no public accessor for its sub-parsers
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise ValueError(f"{parser.prog!r} has no sub-command {name!r}")


class CliHelp(SphinxDirective):
    """Render ``parser.format_help()``."""

    required_arguments = 1
    option_spec = {"subcommand": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        """Build the parser and return its help text."""
        modname, _, funcname = self.arguments[0].partition(":")
        parser = getattr(importlib.import_module(modname), funcname)()
        if "subcommand" in self.options:
            parser = _subparser(parser, self.options["subcommand"])
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = WIDTH  # argparse wraps to $COLUMNS
        try:
            text = parser.format_help()
        finally:
            if old is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old
        block = nodes.literal_block(text, text)
        block["language"] = "none"
        return [block]


def setup(app):
    """Register the directive."""
    app.add_directive("cli-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
