"""Developer and CI sessions: `nox -s tests`, `lint`, `typecheck`, `imports`; `bench` on demand."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck", "imports"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (pass pytest arguments after --)."""
    session.install("-e", "./core", "-e", ".[test]")
    session.run("pytest", "--durations=15", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("-e", "./core", "-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on engage_core (see pyproject.toml)."""
    session.install("-e", "./core", "-e", ".[test,typecheck]")
    session.run("mypy")


@nox.session
def imports(session: nox.Session) -> None:
    """import-linter: the hexagon's dependency rules."""
    session.install("-e", "./core", "-e", ".[typecheck]")
    session.run("lint-imports")


@nox.session
def bench(session: nox.Session) -> None:
    """The performance suite against this machine's limits (bench/README.md); its
    options after --, e.g. `nox -s bench -- --json bench.json`. Not run by default."""
    session.install("-e", "./core", "-e", ".[bench]")
    session.run("python", "bench/suite.py", *session.posargs)


@nox.session
def screenshots(session: nox.Session) -> None:
    """PNGs of every page of the web app at desktop and phone widths into
    docs/screenshots (scripts/screenshots.py; needs Chromium). Not run by default."""
    session.install("-e", "./core", "-e", ".[test]")
    session.run("python", "scripts/screenshots.py", *session.posargs)
