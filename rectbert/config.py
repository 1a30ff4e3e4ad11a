"""Config dataclasses' one source of truth: a field a user sets is declared with setting()
(default, help, and where needed its flag name, choices or kind); validation names the field.

The experiments make their flags from these fields (experiments/cli.py) and build the configs
from one flat dict of values keyed by flag name (build()); a failed check is a ConfigError
naming the field and its flag, so the command line reports it against the flag in one line.
"""

from __future__ import annotations

import dataclasses
import math

KINDS = ("range", "counts", "names", "int", "str")  # what a default's own type cannot say


class ConfigError(ValueError):
    """A config value that is not allowed."""

    def __init__(self, owner: str, field: str, value, allowed: str, flag: str | None = None):
        self.owner, self.field, self.value, self.allowed = owner, field, value, allowed
        self.flag = flag or field
        super().__init__(f"{owner}.{field}={value!r}: must be {allowed}")


def setting(default, help: str, *, flag=None, choices=None, kind=None, **metadata):
    """A field a user sets: its default and the help text of the flag made from it.

    flag: the flag's name where it is not the field's (e.g. TrainConfig.schedule is
    --lr_schedule); choices: the allowed names (a tuple, or a registry dict whose entries may
    carry a .help); kind: one of KINDS where the default's type does not say (range: 'lo,hi'
    or empty for None; counts: whole numbers; names: a list of names; int/str: a None
    default)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    extra = {"flag": flag, "choices": choices, "kind": kind}
    md = {"help": help, **{k: v for k, v in extra.items() if v is not None}, **metadata}
    default = tuple(default) if isinstance(default, list) else default
    return dataclasses.field(default=default, metadata=md)


def whole_number(text) -> int:
    """A whole number from its text ('4' or '4.0'); ValueError otherwise."""
    number = float(text)
    if not number.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(number)


def from_text(f: dataclasses.Field, text: str):
    """The value of setting `f` written as text (as on a command line): a comma list for a
    range, counts or names; true/false; a number of the default's type. ValueError if not."""
    kind = f.metadata.get("kind")
    if kind in ("range", "counts", "names"):
        item = {"range": float, "counts": whole_number, "names": str}[kind]
        return tuple(item(p.strip()) for p in text.split(",") if p.strip())
    if kind == "str" or isinstance(f.default, str) or "choices" in f.metadata:
        return text
    if isinstance(f.default, bool):
        said = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if text.lower() not in said:
            raise ValueError(f"{text!r} is not true or false")
        return said[text.lower()]
    return int(text) if kind == "int" or isinstance(f.default, int) else float(text)


def settings(cls) -> list[dataclasses.Field]:
    """The fields of `cls` a user sets (declared with setting()), in order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", f.name)


def choices(f: dataclasses.Field) -> list[str] | None:
    c = f.metadata.get("choices")
    return None if c is None else list(c)


def build(cls, values: dict, **given):
    """cls(**fields): each field from `given`, else from values[its flag name] when there."""
    kwargs = dict(given)
    for f in settings(cls):
        if f.name not in given and flag_name(f) in values:
            kwargs[f.name] = values[flag_name(f)]
    return cls(**kwargs)


def error(obj, field: str, allowed: str) -> ConfigError:
    """A ConfigError for `field` of `obj` (an instance or a class), naming its flag."""
    cls = obj if isinstance(obj, type) else type(obj)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    flag = flag_name(by_name[field]) if field in by_name else field
    value = getattr(obj, field, None) if not isinstance(obj, type) else None
    return ConfigError(cls.__name__, field, value, allowed, flag)


def validate(obj, checks) -> None:
    """Raise a ConfigError for the first (ok, field, allowed) in `checks` that is not ok.

    First, every float field (or float in a tuple field) must be finite (nan passes no
    comparison and inf passes too many) and every setting with choices one of them. `ok` may
    be a callable, evaluated only when the checks before it passed."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise error(obj, f.name, "a finite number")
        allowed = choices(f)
        if allowed is not None and value not in allowed:
            raise error(obj, f.name, f"one of {allowed}")
    for ok, field, allowed in checks:
        if not (ok() if callable(ok) else ok):
            raise error(obj, field, allowed)


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


def flatten(tree: dict, prefix: str = "") -> dict:
    """A nested record as {dotted path: value} ({"model": {"relative": "none"}} ->
    {"model.relative": "none"})."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def defaults(obj, prefix: str = "") -> dict:
    """{dotted path: declared default, as recorded} of every field of the config `obj` that
    declares a default: of an instance, those its record keeps, the configs its fields hold
    included, with the name of each named one (a task's, a scene's: "task.scene.name"); of a
    class, its own. What a record written before a field existed is read with
    (training.workdir.inherit)."""
    if isinstance(obj, type):
        fields = dataclasses.fields(obj)
        return {prefix + f.name: record(_default(f)) for f in fields if has_default(f)}
    recorded = flatten(record(obj))
    return {prefix + k: v for k, v in _declared(obj).items() if k in recorded}


def _declared(obj, prefix: str = "") -> dict:
    out = {}
    if isinstance(getattr(obj, "name", None), str):
        out[f"{prefix}name"] = obj.name
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(_declared(value, f"{prefix}{f.name}."))
        elif has_default(f):
            out[f"{prefix}{f.name}"] = record(_default(f))
    return out


def has_default(f: dataclasses.Field) -> bool:
    """Whether the field declares a default (a value or a factory)."""
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def fields_record(obj, skip: tuple[str, ...] = ()) -> dict:
    """A dataclass's fields as a JSON-able dict, leaving out `skip` (e.g. arrays)."""
    return {
        f.name: record(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip
    }
