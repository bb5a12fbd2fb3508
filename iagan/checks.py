"""Readers of typed settings: each takes (key, raw value) and returns the value or raises a UserError naming the key.

Numbers may arrive as strings: PyYAML (YAML 1.1) reads `1e-9` without a dot as text, and `dvc exp run -S` passes
values through it, so numeric readers parse such strings. NaN, infinities and booleans are never numbers here.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Iterable

from iagan.errors import UserError

Reader = Callable[[str, Any], Any]


def number(key: str, raw: Any) -> float:
    if isinstance(raw, bool) or raw is None or isinstance(raw, (list, dict)):
        raise UserError(f"{key} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise UserError(f"{key} must be a finite number, got {raw}")
    return value


def whole(minimum: int) -> Reader:
    def read(key: str, raw: Any) -> int:
        value = number(key, raw)
        if value != int(value) or value < minimum:
            raise UserError(f"{key} must be a whole number >= {minimum}, got {raw}")
        return int(value)

    return read


def positive(key: str, raw: Any) -> float:
    value = number(key, raw)
    if value <= 0:
        raise UserError(f"{key} must be > 0, got {raw}")
    return value


def non_negative(key: str, raw: Any) -> float:
    value = number(key, raw)
    if value < 0:
        raise UserError(f"{key} must be >= 0, got {raw}")
    return value


def fraction(key: str, raw: Any) -> float:
    """A number in (0, 1]."""
    value = number(key, raw)
    if not 0 < value <= 1:
        raise UserError(f"{key} must be in (0, 1], got {raw}")
    return value


def choice(*options: str) -> Reader:
    def read(key: str, raw: Any) -> str:
        if raw not in options:
            raise UserError(f"{key} must be one of {', '.join(options)}, got {raw!r}")
        return raw

    return read


def text(key: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise UserError(f"{key} must be a non-empty string, got {raw!r}")
    return raw


def flag(key: str, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise UserError(f"{key} must be true or false, got {raw!r}")
    return raw


def optional(reader: Reader) -> Reader:
    """`reader`, or None when the value is null."""
    return lambda key, raw: None if raw is None else reader(key, raw)


def either(*readers: Reader) -> Reader:
    """The first reader that accepts the value; the last one's error otherwise."""
    def read(key: str, raw: Any) -> Any:
        for r in readers[:-1]:
            try:
                return r(key, raw)
            except UserError:
                pass
        return readers[-1](key, raw)

    return read


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean X?' for the closest known name, or ''."""
    known = list(known)
    same = [k for k in known if k.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def known_keys(where: str, entry: dict, known: Iterable[str], prefix: str = "") -> None:
    """Refuse keys of `entry` that are not in `known`, naming the closest known key."""
    known = list(known)
    for key in entry:
        if key not in known:
            raise UserError(f"{where}: unknown setting {prefix}{key}{did_you_mean(f'{prefix}{key}', [prefix + k for k in known])}"
                            f" (known: {', '.join(known)})")
