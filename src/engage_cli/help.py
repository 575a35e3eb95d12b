"""How `--help` shows options: a flag takes no value, so it shows no placeholder.

Typer's rich help panel writes a type after every option, flags included
(``--yes -y <bool>``, ``--help <bool>``), while its plain help leaves flags bare.
``show_flags_bare`` makes the panel do what the plain help does; options with a
fixed set of values are typed ``Literal[...]`` and list them (``<csv|jsonl>``).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_display_type = TyperOption.display_type_rich


def _flag_shows_no_value(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag or self.count:
        return None
    return _display_type(self, ctx)


def show_flags_bare() -> None:
    """Once, before any help is printed (idempotent)."""
    TyperOption.display_type_rich = _flag_shows_no_value  # type: ignore[method-assign]
