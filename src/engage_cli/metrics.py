"""`engage metrics backfill | export`: bulk loads through COPY, streamed exports."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, BinaryIO, Literal

import typer

from engage_adapters.bootstrap import Services
from engage_cli.context import with_services
from engage_cli.errors import fail, option_value, reported_errors, until_the_reader_leaves
from engage_cli.files import (
    COLUMNS,
    CountingReader,
    FileError,
    csv_line,
    format_of,
    jsonl_line,
    read_rows,
)
from engage_cli.terminal import counted
from engage_core.queries import check_bound
from engage_core.services.backfill import BackfillReport

app = typer.Typer(help="Bulk metric loads and exports.", no_args_is_help=True)

FileFormat = Literal["csv", "jsonl"]
Format = Annotated[
    FileFormat | None,
    typer.Option("--format", help="Default: from the file name; csv for -."),
]


@app.command()
def backfill(
    file: Annotated[str, typer.Argument(help="A .csv or .jsonl file, or - for stdin.")],
    user: Annotated[
        str | None, typer.Option("--user", help="Load every row for this user (no email column).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; store nothing.")
    ] = False,
    fmt: Format = None,
) -> None:
    """Load metrics from a file: all rows or none.

    Columns: email,metric_type,metric_value,recorded_at (email may be left out
    with --user). Every row is checked with the API's rules; bad rows are
    reported by line and then nothing is stored. Rows already stored are
    skipped, so loading the same file twice does not double-count.
    """
    with reported_errors():
        chosen = _checked_format(file, fmt)
        with _opened(file) as raw:
            counter = CountingReader(raw)
            # Bytes that are not UTF-8 pass as lone surrogates: read_rows names their line
            # (a strict decoder fails on the block it reads ahead, lines later).
            text = io.TextIOWrapper(
                io.BufferedReader(counter),
                encoding="utf-8-sig",
                errors="surrogateescape",
                newline="",
            )
            total = _size_of(file, raw)
            with _progress(total, lambda: counter.count) as tick:

                async def load(services: Services) -> BackfillReport:
                    return await services.backfill.backfill(
                        read_rows(text, chosen), user_email=user, dry_run=dry_run, progress=tick
                    )

                report = with_services(load)
    _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def export(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's metrics.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this ISO 8601 time on (inclusive).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this ISO 8601 time (exclusive).")
    ] = None,
    fmt: Annotated[FileFormat, typer.Option("--format", help="The output's format.")] = "csv",
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write here (default: stdout): a file appears whole or not at all;"
            " a device, FIFO or symlink (/dev/stdout) is written into, never replaced.",
        ),
    ] = None,
) -> None:
    """Stream metrics out as backfill input: email,metric_type,metric_value,recorded_at."""
    with reported_errors():
        start = _moment("--since", since)
        end = _moment("--until", until)
        if start and end and start >= end:
            fail("--until must be after --since")
        with _destination(output) as sink:

            async def write(services: Services) -> int:
                user_id = (await services.admin.find(user)).id if user is not None else None
                count = 0
                async with aclosing(
                    services.backfill.export(user_id=user_id, since=start, until=end)
                ) as rows:
                    if fmt == "csv":
                        writer = csv.writer(sink, lineterminator="\n")
                        writer.writerow(COLUMNS)
                        async for metric in rows:
                            writer.writerow(csv_line(metric))
                            count += 1
                    else:
                        async for metric in rows:
                            sink.write(jsonl_line(metric))
                            count += 1
                return count

            with until_the_reader_leaves():
                count = with_services(write)
    typer.echo(f"exported {counted(count, 'metric')}", err=True)


# --- helpers --------------------------------------------------------------------

PLAIN_PROGRESS_EVERY = 5.0  # seconds between progress lines when not on a terminal


def _checked_format(file: str, explicit: str | None) -> str:
    try:
        return format_of(file, explicit)
    except FileError as exc:
        fail(str(exc))


@contextmanager
def _opened(file: str) -> Iterator[BinaryIO]:
    if file == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    with handle:
        yield handle


def _size_of(file: str, raw: BinaryIO) -> int | None:
    if file == "-":
        return None
    try:
        return os.fstat(raw.fileno()).st_size
    except OSError:
        return None


@contextmanager
def _progress(total: int | None, done_bytes: Callable[[], int]) -> Iterator[Callable[[int], None]]:
    """A rich progress bar (rows, rows/s, ETA) on a terminal; plain lines otherwise."""
    rows = 0
    started = time.monotonic()
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("[bold]backfill"),
            BarColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TextColumn("{task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        task = progress.add_task("backfill", total=total, rows=0, rate=0.0)

        def tick(count: int) -> None:
            nonlocal rows
            rows += count
            if rows % 2_000 == 0:
                elapsed = max(time.monotonic() - started, 1e-6)
                progress.update(task, completed=done_bytes(), rows=rows, rate=rows / elapsed)

        with progress:
            yield tick
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=total or done_bytes(), rows=rows, rate=rows / elapsed)
        return

    last = started

    def tick_plain(count: int) -> None:
        nonlocal rows, last
        rows += count
        now = time.monotonic()
        if now - last >= PLAIN_PROGRESS_EVERY:
            last = now
            rate = rows / max(now - started, 1e-6)
            share = f", {100 * done_bytes() / total:.0f}%" if total else ""
            typer.echo(f"backfill: {rows:,} rows read ({rate:,.0f} rows/s{share})", err=True)

    yield tick_plain


def _print_report(report: BackfillReport) -> None:
    if not report.ok:
        for fault in report.faults:
            typer.echo(f"line {fault.line}: {fault.message}", err=True)
        hidden = report.fault_count - len(report.faults)
        if hidden > 0:
            typer.echo(f"... and {hidden} more bad rows", err=True)
        typer.echo(
            f"engage: error: {report.fault_count} of {report.rows} rows are bad;"
            " nothing was loaded",
            err=True,
        )
        return
    if report.dry_run:
        typer.echo(f"dry run: all {report.rows} rows are valid; nothing was loaded")
        return
    typer.echo(
        f"loaded {counted(report.inserted, 'metric')} ({report.skipped} already stored)"
        f" from {counted(report.rows, 'row')}"
    )


def _moment(option: str, raw: str | None) -> datetime | None:
    """An end of the range, with the API's rules for one (any moment with an offset,
    before 1970 or in the future too), its fault told under the option's name."""
    return None if raw is None else option_value(option, lambda: check_bound(raw))


@contextmanager
def _destination(output: Path | None) -> Iterator[IO[str]]:
    """stdout; or a file that appears whole or not at all; or, written into as it is,
    what is not a plain file: a device, a FIFO, a symlink (/dev/stdout), never replaced."""
    if output is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    if output.is_dir():
        fail(f"cannot write to {output}: it is a directory")
    if output.is_symlink() or (output.exists() and not output.is_file()):
        with _written_through(output) as sink:
            yield sink
        return
    directory = output.parent if str(output.parent) else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
            "w",
            dir=directory,
            prefix=f".{output.name}.",
            suffix=".part",
            delete=False,
            encoding="utf-8",
            newline="",
        )
    except OSError as exc:
        fail(f"cannot write to {directory}: {exc.strerror}")
    try:
        with _closed_once(handle):
            yield handle
        os.replace(handle.name, output)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


@contextmanager
def _written_through(output: Path) -> Iterator[IO[str]]:
    try:
        handle = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        fail(f"cannot write to {output}: {exc.strerror}")
    with _closed_once(handle):
        yield handle


@contextmanager
def _closed_once(handle: IO[str]) -> Iterator[None]:
    """Close ``handle`` after the work; if the work failed (a full disk), its error is
    the one told, not a second one from flushing what is left on closing."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    handle.close()
