"""engage-core stands alone: its wheel installed into a fresh virtual environment
with nothing else of engage-suite, importing it loads only the standard library
and its own dependencies, and docs/core.md's examples run there as printed and
pass mypy --strict against the installed wheel; its package page (the long
description, core/README.md) links nowhere that only the repository has.

Builds both wheels with pip (build isolation fetches hatchling from the package
index) and installs engage-core's dependencies from the index: one fresh venv
for the module, about a minute."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_DEPENDENCIES = {"attrs", "email-validator", "tzdata"}
# Installed where they apply: tzdata only on Windows, which has no system zones.
ON_THIS_PLATFORM = CORE_DEPENDENCIES - (set() if sys.platform == "win32" else {"tzdata"})
# What those bring themselves: email-validator needs dnspython and idna.
# Nothing else may be installed.
INDIRECT = {"dnspython", "idna"}
# The top-level modules those distributions provide.
DEPENDENCY_MODULES = {
    "attr", "attrs", "email_validator", "tzdata", "dns", "idna",
}  # fmt: skip

IMPORT_ALL = """
import json, pkgutil, importlib, sys
before = set(sys.modules)
import engage_core
for info in pkgutil.walk_packages(engage_core.__path__, "engage_core."):
    importlib.import_module(info.name)
print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - before})))
"""


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with pip (the test's own may have none: nox makes it with uv)."""
    home = tmp_path_factory.mktemp("core-venv")
    venv.create(home, with_pip=True)
    return home / "bin" / "python"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory, fresh_venv: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    _run(fresh_venv, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT / "core", ROOT)
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert set(built) == {"engage_core", "engage_suite"}, built
    return built


@pytest.fixture(scope="module")
def fresh_python(fresh_venv: Path, wheels: dict[str, Path]) -> Path:
    """That venv with engage-core's wheel installed and nothing else of ours
    (building the wheels installs nothing into it)."""
    _run(
        fresh_venv,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        wheels["engage_core"],
    )
    return fresh_venv


def _metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode())
    return {key: message.get_all(key) or [] for key in ("Name", "Version", "Requires-Dist")}


def _long_description(wheel: Path) -> tuple[list[str], str]:
    """The wheel's Project-URLs and its long description (the README)."""
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode())
    return message.get_all("Project-URL") or [], str(message.get_payload())


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None
    return match.group(0).lower().replace("_", "-")


def test_engage_core_declares_three_dependencies_and_suite_requires_it_at_its_version(
    wheels: dict[str, Path],
) -> None:
    core, suite = _metadata(wheels["engage_core"]), _metadata(wheels["engage_suite"])
    source = (ROOT / "core/src/engage_core/__init__.py").read_text()
    version = re.search(r'^__version__ = "(.+)"$', source, re.M)
    assert version is not None

    assert core["Version"] == suite["Version"] == [version.group(1)]
    assert {_name(r) for r in core["Requires-Dist"]} == CORE_DEPENDENCIES
    assert f"engage-core=={version.group(1)}" in suite["Requires-Dist"]
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"engage-core=={version.group(1)}" in pinned


def test_the_core_package_page_links_only_to_what_resolves_outside_the_repository(
    wheels: dict[str, Path],
) -> None:
    """The long description is read on its own (an index's page, ``pip show``): no
    link relative to the repository, and no placeholder address."""
    urls, description = _long_description(wheels["engage_core"])

    assert "# engage-core" in description
    targets = re.findall(r"\]\(([^)]*)\)", description)
    assert [t for t in targets if not t.startswith("https://")] == []
    assert "../" not in description
    assert "example.invalid" not in description
    assert [u for u in urls if "example.invalid" in u] == []


def test_the_core_wheel_is_typed_and_carries_its_fakes(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["engage_core"]) as archive:
        names = set(archive.namelist())
    assert "engage_core/py.typed" in names
    assert "engage_core/testing/__init__.py" in names
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"engage_core"}


def test_the_suite_wheel_does_not_carry_the_core(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["engage_suite"]) as archive:
        packages = {name.split("/")[0] for name in archive.namelist()}
    assert "engage_core" not in packages
    assert {"engage_adapters", "engage_http", "engage_cli"} <= packages


def test_a_fresh_venv_gets_five_packages_the_core_its_dependencies_and_theirs(
    fresh_python: Path,
) -> None:
    listed = json.loads(_run(fresh_python, "-m", "pip", "list", "--format=json"))
    installed = {_name(item["name"]) for item in listed} - {"pip", "setuptools"}

    assert installed == {"engage-core"} | ON_THIS_PLATFORM | INDIRECT
    assert len(installed) <= 5


def test_importing_every_core_module_loads_nothing_but_the_standard_library_and_those(
    fresh_python: Path,
) -> None:
    loaded = set(json.loads(_run(fresh_python, "-c", IMPORT_ALL)))
    # The interpreter's build settings module, which stdlib_module_names leaves out.
    standard = set(sys.stdlib_module_names) | {n for n in loaded if n.startswith("_sysconfigdata")}

    assert "engage_core" in loaded
    assert loaded - standard - DEPENDENCY_MODULES == {"engage_core"}


def _guide_examples(into: Path) -> list[Path]:
    """docs/core.md's python blocks, then core/README.md's (the package page), as
    written, one script each in ``into``."""
    guide = (ROOT / "docs/core.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", guide, re.S)
    assert len(examples) >= 2  # the first call over the fakes and the SQLite service
    examples += re.findall(r"```python\n(.*?)```", (ROOT / "core/README.md").read_text(), re.S)
    scripts = []
    for number, example in enumerate(examples):
        script = into / f"example_{number}.py"
        script.write_text(example)
        scripts.append(script)
    return scripts


def test_the_examples_of_docs_core_md_run_with_only_the_core_installed(
    fresh_python: Path, tmp_path: Path
) -> None:
    printed = ""
    for script in _guide_examples(tmp_path):
        printed += _run(fresh_python, "-I", script, cwd=tmp_path)
    assert "Traceback" not in printed
    assert "pages read per Berlin day" in printed


def test_the_examples_of_docs_core_md_pass_mypy_strict_against_the_installed_wheel(
    fresh_python: Path, tmp_path: Path
) -> None:
    """As the guide promises ("your type checker sees every signature"): mypy reads
    engage_core from the wheel in the fresh venv (its py.typed), not from this tree.
    mypy goes into a directory of its own, so the venv keeps its five packages."""
    tools = tmp_path / "mypy"
    _run(
        fresh_python,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--target",
        tools,
        "mypy>=1.13",
    )
    scripts = _guide_examples(tmp_path)
    checked = subprocess.run(
        [fresh_python, "-m", "mypy", "--strict", "--no-incremental", *scripts],
        cwd=tmp_path,  # no configuration file of this repository applies
        env={"PYTHONPATH": str(tools), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


WITHOUT_ZONES = """
import asyncio
from zoneinfo import ZoneInfoNotFoundError
from engage_core import BrowserLogin
from engage_core.testing import in_memory_services

async def main() -> None:
    app = in_memory_services()
    await app.auth.sign_up(email="ada@example.com", password="correct horse battery")
    login = await app.auth.log_in(email="ada@example.com", password="correct horse battery")
    assert isinstance(login, BrowserLogin)
    me = await app.auth.authenticate(login.access_token)
    await app.metrics.record(me.user_id, metric_type="page_view", metric_value=3)
    assert len((await app.metrics.list(me.user_id)).items) == 1
    for tz in ("UTC", "Europe/Berlin"):
        try:
            await app.metrics.summary(me.user_id, tz=tz)
        except ZoneInfoNotFoundError as exc:
            print(exc)
        else:
            raise AssertionError(f"a summary in {tz} without any time zone data")

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="Windows installs tzdata with the core")
def test_without_a_time_zone_database_the_core_imports_and_a_summary_says_install_tzdata(
    fresh_python: Path, tmp_path: Path
) -> None:
    """As on Alpine or distroless: no /usr/share/zoneinfo and, on Linux, no tzdata
    package. Sign-up, login and metrics need no zones; a summary (in UTC too)
    says what to install, not that Europe/Berlin is no time zone name."""
    no_zones = tmp_path / "zoneinfo"
    no_zones.mkdir()
    done = subprocess.run(
        [fresh_python, "-I", "-c", WITHOUT_ZONES],
        env={"PYTHONTZPATH": str(no_zones), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("pip install tzdata") == 2, done.stdout
