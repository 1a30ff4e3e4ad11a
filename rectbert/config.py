"""Config validation shared by every frozen config dataclass, and their JSON records.

A failed check is a ConfigError naming the field, the value and what is allowed, so an
experiment can report it against the flag of that name in one line.
"""

from __future__ import annotations

import dataclasses
import math


class ConfigError(ValueError):
    """A config value that is not allowed."""

    def __init__(self, owner: str, field: str, value, allowed: str):
        self.owner, self.field, self.value, self.allowed = owner, field, value, allowed
        super().__init__(f"{owner}.{field}={value!r}: must be {allowed}")


def validate(obj, checks) -> None:
    """Raise a ConfigError for the first (ok, field, allowed) in `checks` that is not ok.

    `ok` may be a callable, evaluated only when the checks before it passed. Every float field
    (or float in a tuple field) must first be finite: nan passes no comparison and inf passes
    too many."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(type(obj).__name__, f.name, value, "a finite number")
    for ok, field, allowed in checks:
        if not (ok() if callable(ok) else ok):
            raise ConfigError(type(obj).__name__, field, getattr(obj, field, None), allowed)


def record(obj):
    """A JSON-able value: configs as dicts (through their own `record()` where they have one,
    e.g. scenes and tasks), tuples as lists."""
    if hasattr(obj, "record") and not isinstance(obj, type):
        return obj.record()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return fields_record(obj)
    if isinstance(obj, tuple | list):
        return [record(v) for v in obj]
    return obj


def fields_record(obj, skip: tuple[str, ...] = ()) -> dict:
    """A dataclass's fields as a JSON-able dict, leaving out `skip` (e.g. arrays)."""
    return {
        f.name: record(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip
    }
