"""The performance suite: engage-suite over HTTP against the machine's own limits.

What it measures, on what data and where: the package bench/suite/ (its
``__init__``); this file is its command line.

Usage::

    python bench/suite.py [--json out.json] [--compare-uvicorn] [--redis]
                          [--profile DIR [--profile-format raw]] [--duration 8] [--connections 32]
"""

from __future__ import annotations

import sys

# The directory bench/suite/ is the package `suite`: Python prefers it to this file.
from suite.cli import main

if __name__ == "__main__":
    sys.exit(main())
