"""Command-line plumbing shared by the entry points: flags generated from the settings dataclasses (each flag's
type, default and help text come from its field's declaration in :mod:`cnas.settings` style), boolean parsing,
YAML/JSON config files, and the thin ``main`` wrapper. Settings become flags here only; the entry points add
the few flags of their own that are not settings (``--resume``, ``--model_path``, ``post_search``'s selection).

Flag names are the original's (``--n_epochs``, ``--sec_obj``, ...). Boolean flags accept ``--flag`` alone or
``--flag true|false`` (the original declared them ``type=bool``, so ``--adaptive False`` meant True).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from cnas.errors import ConfigError
from cnas.settings import help_of

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: settings from a YAML (or JSON) file, under the flags given with it."""
    parser.add_argument("--config", default=None, help="YAML file of settings; flags override it")


def str2bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`ConfigError` (one line, exit 2 via run_cli) instead of printing usage."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _base_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return tp


def _part_of(cls: type, name: str) -> type:
    """The class whose body first declared field ``name`` of ``cls`` (the part it comes from)."""
    for klass in reversed(cls.__mro__):
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def add_dataclass_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                       aliases: dict[str, list[str]] | None = None, skip: set[str] = frozenset(),
                       help: dict[str, str] | None = None, rename: dict[str, str] | None = None,
                       title: str | None = None) -> None:
    """One ``--<field>`` flag per field of dataclass ``cls`` with its type and the help text of its declaration
    (:func:`cnas.settings.setting`; ``help`` overrides it per field); default ``None`` (meaning "not given", so a
    config file or the dataclass default applies). ``rename`` maps a field to another flag name (its dest).

    On a parser, the fields of each part (:mod:`cnas.settings`) are listed under the part's title and ``cls``'s
    own fields under ``title`` (or with the parser's options); on an argument group, all of them in that group."""
    hints = typing.get_type_hints(cls)
    aliases, help, rename = aliases or {}, help or {}, rename or {}
    mro = cls.__mro__
    by_title: dict[str | None, list] = {title: []}  # cls's own fields first, then each part's
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            part = _part_of(cls, f.name)
            by_title.setdefault(vars(part).get("title") or title, []).append((mro.index(part), f))
    for t, items in by_title.items():
        if not items:
            continue
        if not isinstance(parser, argparse.ArgumentParser) or t is None:
            target = parser
        else:
            target = next((g for g in parser._action_groups if g.title == t), None) or parser.add_argument_group(t)
        # within a part, the fields of the class that extends it first (the recipe's epochs before its momentum)
        for _, f in sorted(items, key=lambda item: item[0]):
            _add_flag(target, cls, f, hints[f.name], aliases, help, rename)


def _add_flag(target, cls: type, f: dataclasses.Field, hint: Any, aliases: dict, help: dict, rename: dict) -> None:
    tp = _base_type(hint)
    flag = rename.get(f.name, f.name)
    names = [f"--{flag}"] + [f"--{a}" for a in aliases.get(f.name, [])]
    default = f.default if f.default is not dataclasses.MISSING else None
    text = help.get(f.name) or help_of(cls, f.name)
    text += f" (default: {default})" if default is not None else ""
    if tp is bool:
        target.add_argument(*names, dest=flag, type=str2bool, nargs="?", const=True, default=None, metavar="BOOL",
                            help=text)
    elif tp in (int, float, str):
        target.add_argument(*names, dest=flag, type=tp, default=None, help=text)
    else:
        target.add_argument(*names, dest=flag, default=None, help=text)


def given_fields(args: argparse.Namespace, cls: type, rename: dict[str, str] | None = None,
                 skip: set[str] = frozenset()) -> dict:
    """The dataclass fields that were given on the command line (not None), under their field names."""
    rename = rename or {}
    given = vars(args)
    out = {}
    for f in dataclasses.fields(cls):
        dest = rename.get(f.name, f.name)
        if f.name not in skip and given.get(dest) is not None:
            out[f.name] = given[dest]
    return out


def split_config(data: dict, cls: type, rename: dict[str, str] | None = None) -> dict:
    """The part of a flat config-file mapping that belongs to ``cls`` (keys may use the renamed flag names)."""
    rename = rename or {}
    back = {v: k for k, v in rename.items()}
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in data.items():
        if k in back:
            k = back[k]
        elif k in rename:  # this field's flag has another name; the key belongs to someone else
            continue
        if k in names:
            out[k] = v
    return out


def load_config_file(path: str | Path) -> dict:
    """A YAML (or JSON) mapping of setting names to values; one clear line for a bad file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of setting: value, got {type(data).__name__}")
    return {str(k).lstrip("-").replace("-", "_"): v for k, v in data.items()}


def build_settings(cls: type, *layers: dict) -> Any:
    """An instance of ``cls`` from layered dicts (later layers win); unknown keys are a ConfigError."""
    names = {f.name for f in dataclasses.fields(cls)}
    merged: dict = {}
    for layer in layers:
        unknown = sorted(set(layer) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        merged.update(layer)
    hints = typing.get_type_hints(cls)
    for key, value in merged.items():
        tp, optional = _base_type(hints[key]), "None" in str(hints[key])
        if value is None and optional:
            continue
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            merged[key] = float(value)
        elif tp in (int, float, bool, str) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
            raise ConfigError(f"setting '{key}' must be {tp.__name__}, got {value!r}")
    try:
        return cls(**merged)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
