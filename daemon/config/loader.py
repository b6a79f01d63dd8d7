"""Reading TOML into frozen dataclasses, driven by the dataclasses' own type hints.

This module knows nothing about actiond's sections: daemon.config declares the dataclasses
and the value checks, and uses `read_toml` + `build` from here. Every error is a
ConfigError naming the file, the dotted key (`cameras[1].ring_policy`) and the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Check = Callable[[Any], "str | None"]  # the reason a value is bad, or None


class ConfigError(Exception):
    """A config file that cannot be used: which file, which key, and why.

    `key` is dotted with array indices (`cameras[1].ring_policy`); it is "" when the
    problem is the file as a whole (missing, unreadable, not valid TOML).
    """

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(file, key, reason)
        self.file = file
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.reason}"
        return f"{self.file}: {self.reason}"


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed top-level table of `path`; ConfigError if unreadable or not TOML."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(
            str(path),
            "",
            "config file not found; create it (see the "
            "config.toml shipped with actiond) or pass its path with -c",
        ) from exc
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: the file is not UTF-8 ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line L, column C)".
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from exc


def join_key(parent: str, child: str) -> str:
    """The dotted key of `child` inside the table at `parent` ("" is the top level)."""
    return f"{parent}.{child}" if parent else child


def describe_value(value: object) -> str:
    """TOML's name for the type of `value`, with the value itself when it is short."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float, str)):
        name = {int: "integer", float: "float", str: "string"}[type(value)]
        return f"{name} {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"date/time {value.isoformat()}"
    return type(value).__name__


def describe_type(tp: Any, key: str = "...") -> str:
    """How the error messages name the TOML type that a type hint asks for."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return describe_type(next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            if dataclasses.is_dataclass(args[0]):
                return f"an array of tables, each entry written as [[{key}]]"
            return f"an array of {_plural(args[0])}"
        return f"an array of {len(args)} {_plural(args[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean (true or false)",
    }[tp]


def _plural(tp: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(tp, "values")


def build(cls: type[T], table: Mapping[str, Any], key: str, file: str) -> T:
    """An instance of dataclass `cls` from a TOML table found at dotted `key`.

    Unknown keys and wrong types raise ConfigError; absent keys take the defaults.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in table:
        if name not in fields:
            raise ConfigError(file, join_key(key, name), _unknown_key_reason(name, fields))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in table:
            values[name] = convert(table[name], hints[name], join_key(key, name), file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(file, join_key(key, name), "required key is missing")
    return cls(**values)


def _unknown_key_reason(name: str, valid: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key{hint}; valid keys here: {', '.join(sorted(valid))}"


def convert(value: Any, tp: Any, key: str, file: str) -> Any:
    """`value` from TOML checked against the type hint `tp` (and converted: list->tuple,
    int->float, table->dataclass)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null: an Optional field that is present always holds a value.
        inner = [a for a in args if a is not type(None)]
        return convert(value, inner[0], key, file)
    if origin is tuple:
        return _convert_tuple(value, tp, args, key, file)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _type_error(value, tp, key, file)
        return build(tp, value, key, file)  # type: ignore[arg-type]
    return _convert_scalar(value, tp, key, file)


def _convert_tuple(
    value: Any, tp: Any, args: tuple[Any, ...], key: str, file: str
) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise _type_error(value, tp, key, file)
    if len(args) == 2 and args[1] is Ellipsis:
        item_types = [args[0]] * len(value)
    elif len(value) != len(args):
        raise ConfigError(file, key, f"must be {describe_type(tp)} (got an array of {len(value)})")
    else:
        item_types = list(args)
    return tuple(
        convert(v, t, f"{key}[{i}]", file)
        for i, (v, t) in enumerate(zip(value, item_types, strict=True))
    )


def _convert_scalar(value: Any, tp: Any, key: str, file: str) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(file, key, f"must be a finite number (got {value!r})")
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"{key}: the config schema uses unsupported type {tp!r}")
    if not ok:
        raise _type_error(value, tp, key, file)
    return value


def _type_error(value: Any, tp: Any, key: str, file: str) -> ConfigError:
    expected = describe_type(tp, key)
    return ConfigError(file, key, f"must be {expected} (got {describe_value(value)})")


# --- reusable value checks (each returns the reason a value is bad, or None) ----------


def greater_than(low: float) -> Check:
    """Check: value > low."""
    return lambda v: None if v > low else f"must be > {low:g} (got {v!r})"


def at_least(low: int) -> Check:
    """Check: value >= low."""
    return lambda v: None if v >= low else f"must be >= {low} (got {v!r})"


def between(low: int, high: int) -> Check:
    """Check: low <= value <= high."""
    return lambda v: None if low <= v <= high else f"must be {low}-{high} (got {v!r})"


def within(low: float, high: float, unit: str = "") -> Check:
    """Check: low <= value <= high, for numbers; `unit` follows the bounds (" s")."""
    return lambda v: (
        None if low <= v <= high else f"must be between {low:g} and {high:g}{unit} (got {v!r})"
    )


def one_of(*choices: str) -> Check:
    """Check: value is one of `choices`."""
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"


def absolute_path(value: str, base_dir: Path) -> Path:
    """`value` (with ~ expanded) made absolute against `base_dir`."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def existing_file(value: str, base_dir: Path, key: str, file: str) -> str:
    """The absolute path of an existing file named by `value`; "" stays ""."""
    if not value:
        return value
    path = absolute_path(value, base_dir)
    if not path.is_file():
        raise ConfigError(
            file,
            key,
            f"file not found: {path} (relative paths are "
            f"resolved against the config file's directory)",
        )
    return str(path)


def parse_listen(text: str) -> tuple[str, int]:
    """("host", port) from "host:port", "[v6addr]:port" or ":port"; ValueError says what
    is wrong.

    ":port" gives host "" (every interface, as socket.bind and prometheus_client read it).
    Port 0 is allowed: the OS picks a free port (tests use it).
    """
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    bare_ipv6 = ":" in host and not text.startswith("[")  # ambiguous: "::1:80"
    if not sep or not port_text.isdigit() or bare_ipv6:
        raise ValueError(
            f'must be "host:port", e.g. "127.0.0.1:9108", "[::1]:9108" or '
            f'":9108" for every interface (got {text!r})'
        )
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0-65535 (got {port})")
    return host, port


def listen_address(value: str) -> str | None:
    """Check: "" (disabled) or a "host:port" that parse_listen accepts."""
    if not value:
        return None
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None
