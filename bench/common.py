"""What the bench scripts share: argument checks and aligned tables.

The scripts run as `python bench/<name>.py`, so this directory is on their path.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (underscores allowed)."""
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The first column left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *(fmt(row) for row in rows)])
