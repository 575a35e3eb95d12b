"""Request bodies decoded with every digit of their numbers kept, and any malformed
one a ``SerializationException`` (a 400), never a 500."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

import msgspec
from litestar.exceptions import SerializationException

# JSON numbers with a fraction or an exponent decode as Decimal: every digit kept.
_decoder = msgspec.json.Decoder(float_hook=Decimal)
# Python's int() reads at most this many digits (sys.int_info), and so does msgspec.
_INT_DIGITS = 4300
# msgspec's words for a whole number of more digits than that.
_TOO_MANY_DIGITS = "Integer value out of range"


def decode(body: bytes) -> Any:
    """The JSON value of ``body`` (``None`` for an empty body)."""
    try:
        try:
            return _decoder.decode(body or b"null")
        except msgspec.ValidationError as exc:
            if not str(exc).startswith(_TOO_MANY_DIGITS):
                raise
            # Rare, and slow: decoded again by the standard library, such a number as
            # a Decimal, so that the field it stands in is refused by its own rule
            # (a 422 naming it) like any other out-of-range value.
            return json.loads(
                body.decode("utf-8"),
                parse_int=_whole_number,
                parse_float=Decimal,
                parse_constant=_refuse_constant,
            )
    except (msgspec.DecodeError, ValueError) as exc:  # json's errors are ValueErrors
        if isinstance(exc, UnicodeDecodeError):
            raise SerializationException("JSON is malformed: not UTF-8") from None
        raise SerializationException(str(exc)) from None
    except RecursionError:
        raise SerializationException("JSON is malformed: nested too deeply") from None


def _whole_number(text: str) -> int | Decimal:
    return int(text) if len(text.lstrip("-")) <= _INT_DIGITS else Decimal(text)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"JSON is malformed: {name} is not JSON")
