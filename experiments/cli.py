"""The command line of every experiment: absl flags made from its recipe's settings (each
flag's type, default and help from the config field that declares it, rectbert.config), the
values they give, one-line errors naming the flag, flags.txt, and the exit codes.

An entry point is `cli.main(recipe)`; the recipe (rectbert/recipes/<name>.py) does the rest.
Only this module reads flags (the library never does).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings

from absl import app, flags
from absl import logging as absl_logging

from rectbert import config, scenes
from rectbert.analysis import calls
from rectbert.files import FileError
from rectbert.recipes import common
from rectbert.training import checkpoint, distributed, metrics, signals
from rectbert.training.distributed import DistributedConfig
from rectbert.training.signals import Interrupted
from rectbert.warn import RectbertWarning


class Error(Exception):
    """An expected failure (a bad flag, a workdir that cannot take the run, ...): one line,
    printed as `error: ...` with a non-zero exit."""


# ----------------------------------------------------------------------------- parsers
class _ListParser(flags.ArgumentParser):
    """'a,b,c' -> a tuple (items through `item`); '' -> ()."""

    syntactic_help = "a comma-separated list"

    def __init__(self, item, what: str):
        self.item, self.what = item, what

    def parse(self, argument):
        if isinstance(argument, tuple | list):
            return tuple(argument)
        parts = [p.strip() for p in str(argument).split(",") if p.strip()]
        try:
            return tuple(self.item(p) for p in parts)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"must be {self.what}") from None

    def flag_type(self):
        return "list"


class _ListSerializer(flags.ArgumentSerializer):
    def serialize(self, value):
        return ",".join(repr(v) if isinstance(v, float) else str(v) for v in value)  # exact


PARSERS = {  # kind -> (item parser, what it must be)
    "counts": (config.whole_number, "whole numbers 'a,b,...'"),
    "names": (str, "names 'a,b,...'"),
    "range": (float, "two numbers 'lo,hi', or empty"),
}


# ----------------------------------------------------------------------------- flags
def _help(f) -> str:
    """The field's help, and each choice's own where its registry has one (positions, ...)."""
    text, entries = f.metadata["help"], f.metadata.get("choices")
    if isinstance(entries, dict):
        helps = {n: getattr(e, "help", e) for n, e in entries.items()}
        if all(isinstance(h, str) for h in helps.values()):
            text += " " + "; ".join(f"{n}: {h}" for n, h in helps.items()) + "."
    return text


def _define(fv, name: str, f, default, help_text: str | None = None) -> None:
    """One flag for the setting `f`, of its kind, with this default."""
    kind, help_text = f.metadata.get("kind"), help_text or _help(f)
    choices = config.choices(f)
    if choices is not None:
        flags.DEFINE_enum(name, default, choices, help_text, flag_values=fv)
    elif kind in PARSERS:
        item, what = PARSERS[kind]
        if kind == "range" and f.default is not None:  # empty (None) only where it is the default
            what = what.removesuffix(", or empty")
        parser = _ListParser(item, what)
        flags.DEFINE(parser, name, default, help_text, fv, _ListSerializer())
    elif kind == "str" or isinstance(f.default, str):
        flags.DEFINE_string(name, default, help_text, flag_values=fv)
    elif isinstance(f.default, bool):
        flags.DEFINE_bool(name, default, help_text, flag_values=fv)
    elif kind == "int" or isinstance(f.default, int):
        flags.DEFINE_integer(name, default, help_text, flag_values=fv)
    else:
        flags.DEFINE_float(name, default, help_text, flag_values=fv)


def _define_scenes(fv) -> None:
    """--scene and every option of every registered family, None by default (each family's
    own default applies; the help names them)."""
    helps = {n: (c.__doc__ or "").strip().splitlines()[0] for n, c in scenes.SCENES.items()}
    text = "Scene family (default rect): " + "; ".join(f"{n}: {h}" for n, h in helps.items())
    flags.DEFINE_enum("scene", None, sorted(scenes.SCENES), text, flag_values=fv)
    defaults = {}
    for family, cls in scenes.SCENES.items():
        for f in scenes.options(cls):
            said = "unset" if f.default is None else repr(f.default)
            defaults.setdefault(f.name, {}).setdefault(said, []).append(family)
    for name, f in common.option_fields().items():
        said = "; ".join(f"{d} ({', '.join(fams)})" for d, fams in defaults[name].items())
        _define(fv, name, f, None, f"{f.metadata['help']} Default: {said}.")


def define(recipe) -> flags.FlagValues:
    """The recipe's flags, on a FlagValues of its own: one per setting of its SETTINGS (but
    those it FIXES), at its defaults, and the scene flags where it takes a scene."""
    fv, defaults = flags.FlagValues(), common.defaults(recipe)
    for f in common.flag_fields(recipe):
        _define(fv, config.flag_name(f), f, defaults[config.flag_name(f)])
    if recipe.SCENES:
        _define_scenes(fv)
    return fv


def parse(recipe, argv: list[str]) -> flags.FlagValues:
    """The recipe's flags parsed from argv (argv[0] the program), as `python -m` would."""
    fv = define(recipe)
    try:
        rest = fv(argv)
    except flags.Error as e:
        raise Error(str(e)) from None
    _no_stray(rest)
    return fv


def _no_stray(argv: list[str]) -> None:
    if len(argv) > 1:
        raise Error(f"{argv[1]!r} is not a flag (flags are --name=value): a stray argument?")


def values(recipe, fv) -> dict:
    """{flag name: value} of the recipe's flags, with the values it fixes."""
    return {**{name: fv[name].value for name in fv}, **recipe.FIXED}


def _error(fv, flag: str, allowed: str, value=None) -> Error:
    """`--flag=value is not allowed: allowed` (an unset flag: the value it took, its default)."""
    shown = fv[flag].serialize() if flag in fv else ""
    if not shown.isprintable():  # a value with a newline or a control character: quoted
        shown = f"--{flag}={fv[flag].value!r}"
    if not shown:
        shown = f"--{flag}" if value is None else f"--{flag} (unset: {value!r})"
    return Error(f"{shown} is not allowed: {allowed}")


def build(recipe, fv, v: dict | None = None, *, join: bool = False):
    """The recipe's plan from the flags (validation only: nothing computed or written); a
    failed check is one Error line naming the flag. With `join`, a --distributed process
    joins its job first (before any other jax call: the plan may ask for the devices)."""
    v = values(recipe, fv) if v is None else v
    _recordable(fv)
    # what the checks warn of (a set that repeats a drawing) is said once they pass: a
    # refusal is its one line alone
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", RectbertWarning)
            if DistributedConfig in recipe.SETTINGS:
                distributed = config.build(DistributedConfig, v)
                if join:
                    distributed.start()
            plan = recipe.build(v)
    except config.ConfigError as e:
        raise _error(fv, e.flag, e.allowed, e.value) from None
    except BaseException:
        _say_again(said)
        raise
    _say_again(said)
    return plan


def _say_again(said) -> None:
    """The warnings held while the checks ran, issued as they were (the module they came
    from, so a filter by module still applies)."""
    for w in said:
        module = next(
            (n for n, m in list(sys.modules.items()) if getattr(m, "__file__", None) == w.filename),
            None,
        )
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, module=module)


def _recordable(fv) -> None:
    """Every text value as flags.txt can keep it, or one Error line: a flagfile line loses the
    white space at its ends, and a line break would split it in two."""
    for name in fv:
        value = fv[name].value
        for text in value if isinstance(value, tuple | list) else (value,):
            if isinstance(text, str) and (text != text.strip() or "\n" in text or "\r" in text):
                raise Error(
                    f"--{name}={text!r} is not allowed: text without white space at either end "
                    "and without a line break (flags.txt could not record it)"
                )


def flags_text(recipe, fv, v: dict) -> str:
    """flags.txt: every flag that applies to this run, one per line, re-runnable with
    --flagfile (another family's options and unset ones left out; with one scene, its
    options resolved to the values it runs with)."""
    names, resolved = sorted(fv), {}
    if recipe.SCENES:
        own = common.option_names(common.scene_names(v))
        names = [n for n in names if n not in common.option_names(scenes.SCENES) - own]
        if not v.get("scenes"):  # one family: what it runs with
            scene = common.scene(v)
            resolved = {"scene": scene.name, **{n: getattr(scene, n) for n in own}}
    lines = []
    for name in names:
        if fv[name].value is not None:
            lines.append(fv[name].serialize())
        elif name in resolved:
            lines.append(_serialize(name, resolved[name]))
    return "".join(line + "\n" for line in lines)


def _serialize(name: str, value) -> str:
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, tuple | type(None)):
        return f"--{name}={_ListSerializer().serialize(value or ())}"
    return f"--{name}={value}"


def invoke(recipe, fv, argv=()) -> None:
    """What a command does once its flags are parsed: refuse a stray argument, join the job
    (--distributed), build the plan and run it. Every expected failure is one Error line;
    Interrupted (a signal stopped it) and KeyboardInterrupt pass through."""
    _no_stray(list(argv))
    v = values(recipe, fv)
    plan = build(recipe, fv, v, join=True)
    try:
        text = flags_text(recipe, fv, v)
        recipe.main(plan, files={"flags.txt": text})
    except config.ConfigError as e:  # found after the start (e.g. the devices' count)
        raise _error(fv, e.flag, e.allowed, e.value) from None
    except (FileError, metrics.MetricsError) as e:
        raise Error(f"--workdir={v.get('workdir')}: {e}") from None
    except (metrics.NonFiniteError, checkpoint.CheckpointError, calls.TooLarge) as e:
        raise Error(str(e)) from None


def run(recipe, *args: str) -> None:
    """The command in this process, as `python -m experiments.<name> args` runs it (tests)."""
    invoke(recipe, parse(recipe, ["prog", *args]))


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, RectbertWarning):
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        _default_show(message, category, filename, lineno, file, line)


_default_show = warnings.showwarning


def _leave(code: int, line: str) -> None:
    """Exit now with `code` after one line on stderr. Everything the run keeps is written and
    closed by then (the with-blocks it left); what is still running is work it abandoned —
    XLA computations in flight, orbax's and TensorStore's threads after a failed save — whose
    teardown in interpreter shutdown could print tracebacks or crash (a segfault after a
    signal): the process ends without it."""
    print(line, file=sys.stderr, flush=True)
    distributed.stop()  # process 0 hosts the job: it waits for the others to leave
    sys.stdout.flush()
    logging.shutdown()
    os._exit(code)


def main(recipe) -> None:
    """The entry point of `python -m experiments.<name>`: the recipe's flags beside absl's,
    and every expected failure as one line with a non-zero exit."""
    fv = define(recipe)
    flags.FLAGS.append_flag_values(fv)
    for name in fv:  # listed by --help under the experiment (appended flags belong to no module)
        flags.FLAGS.register_flag_by_module(sys.argv[0], fv[name])
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # backend search
    warnings.showwarning = _show
    warnings.simplefilter("always", RectbertWarning)

    def parse_all(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"error: {e}")

    def guarded(argv):
        fv.mark_as_parsed()  # parsed as part of flags.FLAGS
        if not flags.FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
        try:
            with signals.promptly():  # training defers a stop to its next step; the rest stop now
                invoke(recipe, fv, argv)
                distributed.stop()  # before the interpreter's teardown, as _leave does
        except Error as e:
            _leave(1, f"error: {e}")
        except (Interrupted, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            if not getattr(e, "told", False):  # not in training nor in a stage that says more
                e = f"stopped by signal {signum}; re-run the same command: what is finished is kept"
            _leave(128 + signum, str(e))

    app.run(guarded, flags_parser=parse_all)
