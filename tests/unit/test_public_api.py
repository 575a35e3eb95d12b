"""engage-core's public API is whole: what a public class takes or answers can be
named from the public modules (docs/core.md: ``engage_core.__all__``,
``engage_core.testing.__all__``, ``engage_core.summaries.__all__``,
``engage_core.inprocess.__all__``), so a service that installs engage-core alone
never imports from a module the guide calls free to move."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Iterator

import engage_core
from engage_core import inprocess, ports, summaries, testing

PUBLIC_MODULES = (engage_core, testing, summaries, inprocess)
PUBLIC = {id(getattr(m, name)) for m in PUBLIC_MODULES for name in m.__all__}


def _engage_types(hint: object) -> Iterator[type]:
    """The engage_core classes a type hint names, through unions and generics."""
    if isinstance(hint, type) and hint.__module__.startswith("engage_core"):
        yield hint
    origin = typing.get_origin(hint)
    if isinstance(origin, type) and origin.__module__.startswith("engage_core"):
        yield origin
    for argument in typing.get_args(hint):
        yield from _engage_types(argument)


def _signatures(cls: type) -> Iterator[tuple[str, object]]:
    """The constructor and every public method of ``cls``."""
    yield "__init__", cls.__init__
    for name, member in vars(cls).items():
        if not name.startswith("_") and inspect.isfunction(member):
            yield name, member


def test_every_type_a_public_signature_names_is_public() -> None:
    unnamed: dict[str, list[str]] = {}
    for module in (engage_core, testing):
        for name in module.__all__:
            cls = getattr(module, name)
            if not inspect.isclass(cls):
                continue
            # The class's own module, then the public names (for imports under
            # TYPE_CHECKING, which exist only for the type checker).
            names = {**vars(engage_core), **vars(sys.modules[cls.__module__])}
            for method, function in _signatures(cls):
                for hint in typing.get_type_hints(function, globalns=names).values():
                    for used in _engage_types(hint):
                        # An underscore says private on purpose (a fake's own protocol).
                        if id(used) not in PUBLIC and not used.__name__.startswith("_"):
                            where = f"{used.__module__}.{used.__qualname__}"
                            unnamed.setdefault(where, []).append(f"{name}.{method}")
    assert unnamed == {}


def test_account_mail_can_be_built_from_the_public_names() -> None:
    clock = testing.FakeClock()
    mail = engage_core.AccountMail(
        tokens=testing.InMemoryOneTimeTokenRepository(),
        outbox=testing.InMemoryMailQueue(),
        clock=clock,
        uow=testing.InMemoryUnitOfWork(),
        branding=engage_core.Branding("Reading stats", "https://stats.example.com"),
    )
    assert mail.branding.link("/verify") == "https://stats.example.com/verify"


def test_what_the_ports_module_defines_for_adapters_is_public() -> None:
    """The ports are what another service's adapters implement: the constants their
    docstrings hold adapters to (``LAST_USED_RESOLUTION``, ``MAX_REPORTED_FAULTS``)
    and the ``Notice`` a ``MetricFeed`` yields come from ``engage_core`` too."""
    assert sorted(set(ports.__all__) - set(engage_core.__all__)) == []
