"""Where a profiled run's worker time went, by part (``--profile DIR --profile-format raw``).

py-spy's collapsed stacks hold one line per distinct stack and its sample count;
without ``--idle`` it samples running threads only, so a part's share of the
samples is its share of the workers' CPU. Each stack goes to the first part,
from its innermost frame outwards, that one of its frames belongs to: a frame
of Litestar's called from a handler is Litestar's, the handler's own work is
ours. Stacks with no Python frame at all are granian's native threads.

    python -m suite.profile /tmp/prof          # from bench/: every profile in the directory
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# (part, what a frame of it contains); the first that matches a frame wins.
_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sending to granian", ("wrapped_send (litestar/app.py",)),
    ("psycopg: rows to Python", ("_cursor_base.py", "fetchall", "fetchone", "_process_results")),
    ("psycopg: the round trip", ("psycopg/", "psycopg_pool/")),
    ("gate: session or key check", ("engage_adapters/postgres/transaction.py",)),
    ("domain objects from rows", ("engage_adapters/postgres/", "engage_core.model.")),
    ("access log, request id", ("observability.py", "structlog/")),
    ("route metrics (Prometheus)", ("prometheus_client/", "engage_http/prometheus.py")),
    ("CSRF", ("engage_http/csrf.py",)),
    ("security headers", ("engage_http/headers.py",)),
    ("caller: token and principal", ("engage_http/principal.py", "jwt/", "services/auth.py")),
    ("response structs, JSON", ("engage_http/dto.py", "engage_http/responses.py", "msgspec")),
    ("core: checks, cursor, services", ("engage_core/",)),
    ("handler and the rest of engage_http", ("engage_http/",)),
    ("Litestar: routing, parameters, DI, Response", ("litestar/",)),
    ("event loop, granian's Python side", ("granian/", "asyncio/", "uvloop", "_futures.py")),
)
# The profiles a run writes, in the order of the report's columns (measures.py).
PROFILED = ("bare", "floor-one-trip", "reads", "writes", "key-writes", "batch-writes")
NATIVE = "granian's native threads (no Python frame)"
OTHER = "other"


def part_of(frames: list[str]) -> str:
    if not any(frames):
        return NATIVE
    for frame in reversed(frames):
        for part, marks in _PARTS:
            if any(mark in frame for mark in marks):
                return part
    return OTHER


def parts(lines: Iterable[str]) -> Counter[str]:
    """Samples per part, from py-spy ``--format raw`` lines."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        counts[part_of(stack.split(";") if stack else [])] += int(count)
    return counts


def profile_parts(directory: Path, label: str) -> Counter[str]:
    """Samples per part over every worker's profile ``label-<pid>.txt`` in ``directory``."""
    counts: Counter[str] = Counter()
    for path in sorted(directory.glob(f"{label}-*.txt")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            counts += parts(lines)
    return counts


def profile_table(columns: dict[str, tuple[Counter[str], float | None]]) -> list[str]:
    """One row per part, one column per profile: µs per request when its worker CPU per
    request is known, else the share of its samples."""
    names = [part for part, _ in _PARTS] + [NATIVE, OTHER]
    width = max(len(n) for n in names)
    head = f"{'part':<{width}}" + "".join(f"{label:>18}" for label in columns)
    rows = [head, "-" * len(head)]
    for name in names:
        cells = []
        for counts, cpu_us in columns.values():
            total = sum(counts.values()) or 1
            share = counts[name] / total
            cells.append(
                f"{share * cpu_us:>13,.0f} us  " if cpu_us is not None else f"{share:>16.1%}  "
            )
        if any(counts[name] for counts, _ in columns.values()):
            rows.append(f"{name:<{width}}" + "".join(cells))
    return rows


def labels_in(directory: Path) -> list[str]:
    return sorted({path.name.rsplit("-", 1)[0] for path in directory.glob("*-*.txt")})


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m suite.profile DIR  (py-spy raw profiles of a suite run)")
        return 2
    directory = Path(argv[0])
    columns = {label: (profile_parts(directory, label), None) for label in labels_in(directory)}
    if not columns:
        print(f"no raw profiles (*-<pid>.txt) in {directory}")
        return 1
    print("\n".join(profile_table(columns)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
