"""Value objects accept exactly what CONTRACT.md section 4 ("Validation") allows.

Once you hold an ``Email``, ``Password``, ``MetricType``, ``MetricValue`` or
``Timestamp`` it is valid; anything else is refused with ``ValidationFailed``
naming the field at fault.
"""

from __future__ import annotations

import math
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from engage_core.errors import ValidationFailed
from engage_core.model import Email, MetricType, MetricValue, Password, Timestamp
from engage_core.queries import check_bound

VALUE_BOUND = 10**15
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def refused_field(factory: Any, raw: object) -> str:
    """The field named by the first error ``factory(raw)`` is refused with."""
    with pytest.raises(ValidationFailed) as caught:
        factory(raw)
    assert caught.value.errors, "a refusal must name at least one field"
    return caught.value.errors[0].field


def with_letter_case(text: str, upper: list[bool]) -> str:
    return "".join(c.upper() if up else c.lower() for c, up in zip(text, upper, strict=False))


def insert_at(text: str, index: int, piece: str) -> str:
    index = min(index, len(text))
    return text[:index] + piece + text[index:]


non_strings = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)

# --- Email ----------------------------------------------------------------------

_ATOM = st.text(alphabet=string.ascii_letters + string.digits + "_+-", min_size=1, max_size=10)
_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True).filter(
    lambda label: label[2:4] != "--"  # keep clear of IDNA "xn--" labels
)
_TLD = st.sampled_from(["com", "org", "net", "io", "de", "info", "COM", "Org", "DE"])

local_parts = st.lists(_ATOM, min_size=1, max_size=3).map(".".join)
domains = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, min_size=1, max_size=3), _TLD
)
addresses = st.tuples(local_parts, domains)


@given(addresses)
def test_email_keeps_the_local_part_and_lower_cases_the_domain(address: tuple[str, str]) -> None:
    local, domain = address
    assert Email(f"{local}@{domain}").value == f"{local}@{domain.lower()}"


@given(addresses, st.lists(st.booleans(), min_size=80, max_size=80))
def test_email_equality_and_hash_ignore_letter_case(
    address: tuple[str, str], upper: list[bool]
) -> None:
    text = "@".join(address)
    original, recased = Email(text), Email(with_letter_case(text, upper))
    assert original == recased
    assert hash(original) == hash(recased)
    assert original.canonical == recased.canonical == text.lower()


@given(addresses, addresses)
def test_emails_that_differ_beyond_letter_case_are_different(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assume("@".join(first).lower() != "@".join(second).lower())
    assert Email("@".join(first)) != Email("@".join(second))


@given(
    st.text(alphabet=string.ascii_lowercase, min_size=64, max_size=64),
    st.lists(
        st.text(alphabet=string.ascii_lowercase, min_size=63, max_size=63), min_size=3, max_size=4
    ),
)
def test_email_longer_than_254_characters_is_refused(local: str, labels: list[str]) -> None:
    text = f"{local}@{'.'.join(labels)}.com"
    assert len(text) > 254
    assert refused_field(Email, text) == "email"


@given(st.text().filter(lambda text: "@" not in text))
def test_text_without_an_at_sign_is_refused_as_email(text: str) -> None:
    assert refused_field(Email, text) == "email"


@given(
    addresses,
    st.integers(min_value=0),
    st.sampled_from([" ", "\n", "\t", "@", "(", ")", "<", ">", "[", "]", ",", ";", "\\", '"']),
)
def test_email_with_a_forbidden_character_inserted_is_refused(
    address: tuple[str, str], index: int, junk: str
) -> None:
    assert refused_field(Email, insert_at("@".join(address), index, junk)) == "email"


@given(st.text(alphabet=" \t\r\n", max_size=8))
def test_an_empty_email_is_refused_as_empty(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Email(text)
    assert [(e.field, e.message) for e in caught.value.errors] == [("email", "must not be empty")]


@given(non_strings)
def test_email_that_is_not_a_string_is_refused(raw: object) -> None:
    assert refused_field(Email, raw) == "email"


# --- Password -------------------------------------------------------------------

unicode_text = st.text(alphabet=st.characters(codec="utf-8"), min_size=8, max_size=256)


@given(unicode_text)
def test_password_of_8_to_256_unicode_characters_is_accepted_unchanged(text: str) -> None:
    assert Password(text).value == text


@given(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=7),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=257, max_size=400),
    )
)
@example("x" * 7)
@example("x" * 257)
def test_password_shorter_than_8_or_longer_than_256_characters_is_refused(text: str) -> None:
    assert refused_field(Password, text) == "password"


@given(unicode_text, st.integers(min_value=0), st.characters(categories=["Cs"]))
def test_password_with_a_lone_surrogate_is_refused(text: str, index: int, surrogate: str) -> None:
    assert refused_field(Password, insert_at(text[:-1], index, surrogate)) == "password"


@given(unicode_text, unicode_text)
def test_password_repr_and_str_never_reveal_the_password(secret: str, other: str) -> None:
    password, another = Password(secret), Password(other)
    # Nothing about the secret leaks: every password prints the same...
    assert repr(password) == repr(another)
    assert str(password) == str(another)
    # ...and that printout holds no secret (unless, like "Password", it is in every printout).
    assume(secret not in repr(another) and secret not in str(another))
    assert secret not in repr(password)
    assert secret not in str(password)


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=257, max_size=300))
def test_refused_password_is_not_echoed_in_the_error(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Password(text)
    assert text not in str(caught.value)
    assert all(text not in error.message for error in caught.value.errors)


@given(
    st.text(alphabet=st.characters(codec="utf-8"), min_size=72, max_size=72),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=100),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=100),
)
def test_passwords_sharing_their_first_72_bytes_are_different(
    prefix: str, tail: str, other_tail: str
) -> None:
    assume(tail != other_tail)
    assert Password(prefix + tail) != Password(prefix + other_tail)


@given(non_strings)
def test_password_that_is_not_a_string_is_refused(raw: object) -> None:
    assert refused_field(Password, raw) == "password"


# --- MetricType -----------------------------------------------------------------

METRIC_TYPE_CHARS = string.ascii_letters + string.digits + "_.:-"
metric_type_texts = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}", fullmatch=True)


@given(metric_type_texts)
@example("a")
@example("9" * 100)
@example("api:call-1.v2_x")
def test_metric_type_of_allowed_characters_starting_with_letter_or_digit_is_accepted(
    text: str,
) -> None:
    assert MetricType(text).value == text
    assert str(MetricType(text)) == text


@given(
    st.one_of(
        st.just(""),
        st.text(alphabet=METRIC_TYPE_CHARS, min_size=100, max_size=150).map(lambda t: "a" + t),
        st.tuples(st.sampled_from("_.:-"), st.text(alphabet=METRIC_TYPE_CHARS, max_size=99)).map(
            "".join
        ),
        st.tuples(
            metric_type_texts.filter(lambda t: len(t) < 100),
            st.integers(min_value=1),
            st.characters().filter(lambda c: c not in METRIC_TYPE_CHARS),
        ).map(lambda args: insert_at(args[0], args[1], args[2])),
    )
)
@example("page_view\n")
@example("\npage_view")
@example("pagé_view")
@example("page view")
@example("_page")
@example("a" * 101)
def test_metric_type_breaking_the_pattern_is_refused(text: str) -> None:
    assert refused_field(MetricType, text) == "metric_type"


@given(metric_type_texts)
def test_metric_type_with_a_trailing_newline_is_refused(text: str) -> None:
    assert refused_field(MetricType, text + "\n") == "metric_type"


@given(non_strings)
def test_metric_type_that_is_not_a_string_is_refused(raw: object) -> None:
    assert refused_field(MetricType, raw) == "metric_type"


@given(metric_type_texts, metric_type_texts)
def test_metric_types_order_as_their_text(first: str, second: str) -> None:
    assert (MetricType(first) < MetricType(second)) == (first < second)


# --- MetricValue ----------------------------------------------------------------


@st.composite
def decimals_in_bounds(draw: st.DrawFn) -> Decimal:
    """A Decimal with |v| < 10^15 and at most 20 decimal places, in any representation."""
    places = draw(st.integers(min_value=-14, max_value=20))
    bound = 10 ** (15 + places)
    coefficient = draw(st.integers(min_value=-(bound - 1), max_value=bound - 1))
    padding = draw(st.integers(min_value=0, max_value=10))  # trailing zeros: 1.50 is 1.5
    return Decimal(f"{coefficient * 10**padding}E{-(places + padding)}")


@given(decimals_in_bounds())
@example(Decimal("999999999999999.99999999999999999999"))
@example(Decimal("-999999999999999.99999999999999999999"))
@example(Decimal("0.00000000000000000001"))
@example(Decimal("-0"))
@example(Decimal("0E-40"))
@example(Decimal("1E+14"))
def test_metric_value_of_any_decimal_in_bounds_equals_it(number: Decimal) -> None:
    assert MetricValue(number).value == number


@given(decimals_in_bounds(), st.integers(min_value=1, max_value=10))
def test_numerically_equal_metric_values_are_equal_and_print_alike(
    number: Decimal, zeros: int
) -> None:
    padded = Decimal(f"{number:f}" + ("" if "." in f"{number:f}" else ".") + "0" * zeros)
    assert MetricValue(padded) == MetricValue(number)
    assert str(MetricValue(padded)) == str(MetricValue(number))


@given(st.integers(min_value=-(VALUE_BOUND - 1), max_value=VALUE_BOUND - 1))
def test_metric_value_of_any_integer_in_bounds_equals_it(number: int) -> None:
    assert MetricValue(number).value == number
    assert str(MetricValue(number)) == str(number)  # 0 never as -0, no exponent


@given(
    st.floats(
        min_value=-1e15,
        max_value=1e15,
        exclude_min=True,
        exclude_max=True,
        allow_nan=False,
        allow_infinity=False,
    )
)
@example(0.1)
@example(1 / 300000)  # 3.3333333333333333e-06: an ordinary ratio
@example(999999999999999.9)
def test_metric_value_of_any_finite_float_in_bounds_equals_its_shortest_repr(
    number: float,
) -> None:
    assert MetricValue(number).value == Decimal(repr(number))
    # The same spelling as the number given as a Decimal or as text: no trailing zero.
    assert str(MetricValue(number)) == str(MetricValue(Decimal(repr(number))))
    assert str(MetricValue(number)) == str(MetricValue(repr(number)))


@given(decimals_in_bounds(), st.sampled_from(["plain", "scientific"]))
def test_metric_value_of_a_numeric_string_equals_the_number(number: Decimal, form: str) -> None:
    text = f"{number:f}" if form == "plain" else f"{number:E}"
    assume(len(text) <= 64)
    assert MetricValue(text).value == number


@given(st.booleans())
def test_metric_value_refuses_booleans(flag: bool) -> None:
    assert refused_field(MetricValue, flag) == "metric_value"


def _any_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: with_letter_case(word, upper)
    )


non_finite = st.one_of(
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            Decimal("NaN"),
            Decimal("-NaN"),
            Decimal("sNaN"),
            Decimal("Infinity"),
            Decimal("-Infinity"),
        ]
    ),
    st.tuples(
        st.sampled_from(["", "+", "-"]),
        st.sampled_from(["nan", "snan", "inf", "infinity"]).flatmap(_any_case),
    ).map("".join),
)


@given(non_finite)
def test_metric_value_refuses_nan_and_infinity_in_every_form(raw: object) -> None:
    assert refused_field(MetricValue, raw) == "metric_value"


out_of_bounds = st.one_of(
    st.integers(min_value=VALUE_BOUND),
    st.integers(max_value=-VALUE_BOUND),
    st.floats(min_value=1e15, allow_infinity=False),
    st.floats(max_value=-1e15, allow_infinity=False),
    st.integers(min_value=VALUE_BOUND, max_value=10**40).map(Decimal),
    st.integers(min_value=0, max_value=10**6).map(lambda e: Decimal(f"1E+{15 + e}")),
    st.integers(min_value=VALUE_BOUND, max_value=10**40).map(lambda n: f"-{n}"),
    st.integers(min_value=15, max_value=9999).map(lambda e: f"1e{e}"),
)


@given(out_of_bounds)
@example(VALUE_BOUND)
@example(-VALUE_BOUND)
@example(1e15)
@example(Decimal("1E+15"))
@example("1000000000000000")
@example("1000000000000000.0")
@example("-1e15")
def test_metric_value_of_magnitude_at_least_10_to_the_15_is_refused(raw: object) -> None:
    assert refused_field(MetricValue, raw) == "metric_value"


@given(
    st.one_of(
        st.none(),
        st.binary(),
        st.complex_numbers(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
        st.tuples(st.integers()),
        st.sets(st.integers(), max_size=3),
    )
)
def test_metric_value_that_is_not_a_number_is_refused(raw: object) -> None:
    assert refused_field(MetricValue, raw) == "metric_value"


junk_characters = st.characters(
    codec="utf-8", exclude_categories=["Nd"], exclude_characters="+-.eE"
).filter(lambda c: not c.isspace())


@given(decimals_in_bounds(), st.integers(min_value=0), junk_characters)
@example(Decimal(1000), 1, "_")
@example(Decimal(15), 1, ",")
@example(Decimal(16), 0, "x")
def test_metric_value_of_a_numeric_string_with_junk_is_refused(
    number: Decimal, index: int, junk: str
) -> None:
    assert refused_field(MetricValue, insert_at(f"{number:f}", index, junk)) == "metric_value"


@pytest.mark.parametrize(
    "text",
    ["", " ", "+", "-", ".", "e5", "1e", "1e+", "--1", "+-1", "1..2", "1.2.3", "0x1f", "1e2.5"],
)
def test_metric_value_of_text_that_is_not_a_number_is_refused(text: str) -> None:
    assert refused_field(MetricValue, text) == "metric_value"


# --- Timestamp ------------------------------------------------------------------

# Whole seconds: ISO 8601 offsets have no fractions (and fromisoformat drops them).
fixed_offsets = st.integers(min_value=-86399, max_value=86399).map(
    lambda seconds: timezone(timedelta(seconds=seconds))
)
zones = st.one_of(st.just(UTC), st.timezones(), fixed_offsets)


def instant_in_utc(moment: datetime) -> datetime | None:
    """The naive UTC wall clock of ``moment``, worked out by hand (None if out of range)."""
    offset = moment.utcoffset()
    assert offset is not None
    try:
        return moment.replace(tzinfo=None) - offset
    except OverflowError:
        return None


aware_since_1970 = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9999, 12, 30),
    timezones=zones,
    allow_imaginary=False,
).filter(lambda m: (i := instant_in_utc(m)) is not None and i >= datetime(1970, 1, 1))


@given(aware_since_1970)
@example(datetime(1970, 1, 1, tzinfo=UTC))
@example(datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Berlin")))
def test_timestamp_of_an_aware_datetime_is_the_same_instant_in_utc(moment: datetime) -> None:
    stamp = Timestamp(moment).value
    assert stamp.tzinfo is UTC
    assert stamp.replace(tzinfo=None) == instant_in_utc(moment)


@given(aware_since_1970)
def test_timestamp_of_an_iso_string_with_offset_is_that_instant(moment: datetime) -> None:
    expected = instant_in_utc(moment)
    assert Timestamp(moment.isoformat()).value.replace(tzinfo=None) == expected
    in_utc = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert Timestamp(in_utc).value.replace(tzinfo=None) == expected


@given(st.datetimes(), st.sampled_from(["datetime", "iso", "date"]))
def test_timestamp_refuses_naive_times(moment: datetime, form: str) -> None:
    raw = {"datetime": moment, "iso": moment.isoformat(), "date": moment.date().isoformat()}
    assert refused_field(Timestamp, raw[form]) == "recorded_at"


# What may stand between the date and the time (RFC 3339: "T", "t" or a space).
_SEPARATORS = frozenset("Tt ")


@given(aware_since_1970, st.characters().filter(lambda c: c not in _SEPARATORS))
@example(datetime(2024, 1, 1, tzinfo=UTC), "X")
def test_timestamp_refuses_another_character_between_date_and_time(
    moment: datetime, separator: str
) -> None:
    text = moment.isoformat()
    assert refused_field(Timestamp, text[:10] + separator + text[11:]) == "recorded_at"
    assert refused_field(check_bound, text[:10] + separator + text[11:]) == "since"


@given(aware_since_1970, st.text(min_size=1, max_size=3).filter(lambda t: not t.isspace()))
@example(datetime(2024, 1, 1, tzinfo=UTC), "x")
@example(datetime(2024, 1, 1, tzinfo=UTC), ".")
@example(datetime(2024, 1, 1, tzinfo=UTC), "\x00")
def test_timestamp_refuses_stray_characters_before_the_offset(moment: datetime, stray: str) -> None:
    text = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assume(not re.fullmatch(r"[.,]?[0-9]+", stray))  # digits there are (more of) a fraction
    spoilt = text[:-1] + stray + "Z"
    assert refused_field(Timestamp, spoilt) == "recorded_at"


@given(aware_since_1970)
def test_timestamp_reads_lower_case_t_and_z_as_rfc_3339_allows(moment: datetime) -> None:
    text = moment.astimezone(UTC).isoformat().replace("+00:00", "z").replace("T", "t")
    assert Timestamp(text).value.replace(tzinfo=None) == instant_in_utc(moment)


@pytest.mark.parametrize(
    "text", ["2024-12-31T23:59:60Z", "2023-02-29T00:00:00Z", "2024-01-01T24:00:00Z"]
)
def test_timestamp_says_when_a_well_formed_date_time_does_not_exist(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Timestamp(text)
    assert caught.value.errors[0].message.startswith("must be a date and time that exists")


@pytest.mark.parametrize(
    "text", ["2024-01-01T00:00:00+25:00", "2024-01-01T00:00:00-24:00", "20240101T000000+2360"]
)
def test_timestamp_says_when_its_offset_is_out_of_range(text: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Timestamp(text)
    assert caught.value.errors[0].message == "must have a UTC offset between -23:59 and +23:59"


@given(st.integers(-23, 23), st.integers(0, 59))
def test_every_offset_within_a_day_is_taken(hours: int, minutes: int) -> None:
    sign = "-" if hours < 0 else "+"
    text = f"2024-06-01T12:00:00{sign}{abs(hours):02d}:{minutes:02d}"
    assert Timestamp(text).value.tzinfo is UTC


@given(
    st.datetimes(max_value=datetime(1970, 1, 2), timezones=zones, allow_imaginary=False).filter(
        lambda m: (i := instant_in_utc(m)) is None or i < datetime(1970, 1, 1)
    ),
    st.booleans(),
)
@example(EPOCH - timedelta(microseconds=1), False)
@example(datetime(1970, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), True)
def test_timestamp_before_1970_is_refused(moment: datetime, as_text: bool) -> None:
    raw = moment.isoformat() if as_text else moment
    assert refused_field(Timestamp, raw) == "recorded_at"


@given(st.one_of(st.text(), non_strings))
@example("2024-13-01T00:00:00Z")
@example("9999-12-31T23:59:59-23:59")
@example("0001-01-01T00:00:00+23:59")
def test_timestamp_refuses_anything_else_only_with_validation_failed(raw: object) -> None:
    refused: ValidationFailed | None = None
    try:
        stamp = Timestamp(raw)
    except ValidationFailed as error:
        refused = error
    if refused is not None:
        assert [error.field for error in refused.errors] == ["recorded_at"]
    else:
        assert isinstance(raw, str)
        assert stamp.value.tzinfo is UTC
        assert stamp.value >= EPOCH
