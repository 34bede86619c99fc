"""Analysis commands of the CLI (stats, compare, explain, figures)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the analysis sub-commands on the main parser."""
    return None
