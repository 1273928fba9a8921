"""Option values read by their option's declared type, never by YAML 1.1's guesses.

A `key=value` on a command line and a `key: value` line of a `--config` file both arrive as text. YAML 1.1
would read `no` as false, `1.10` as 1.1, `12:30` as 750 and `null` as a label name as nothing. Here the
option's type decides:

- a `str` option keeps the text as written (a pair of matching outer quotes is taken off: `'null'` is the
  text null);
- `null` unsets an optional option (`X | None`) of any type; an option that cannot be unset refuses it;
- a `bool` takes true/false, yes/no, on/off, 1/0;
- `int` options take whole numbers (`3`, `1_000`), `float` options numbers (`0.5`, `1e-5`), nothing else;
- lists and mappings are written in YAML's flow style (`[a, b]`, `{sport: 'sports and athletes'}`), their
  items read by the item type as above (a label named `no` or `null` stays that text);
- an option typed `Any` (`loss.class_weights`) reads numbers as numbers and the rest as text.

`format_value` writes a value back the way this module reads it: `--help` prints every default with it,
so every documented value is accepted as written.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["NULL", "TextLoader", "convert", "describe", "field_docs", "field_types", "format_value", "from_text",
           "is_optional"]

NULL = "null"
TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")
INTERPOLATION = "${"
"""OmegaConf's `${oc.env:VAR}` and `${section.key}`: kept as text here and resolved when the config is merged."""


class NullText(str):
    """A plain YAML null (`null`, `~`, an empty value) in a file, with the text it was written as."""


class TextLoader(yaml.SafeLoader):
    """YAML with no implicit types but null: every other plain scalar is text, the option's type converts it."""


TextLoader.yaml_implicit_resolvers = {}
TextLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                 ["~", "n", "N", ""])
TextLoader.add_constructor("tag:yaml.org,2002:null", lambda loader, node: NullText(node.value))


def is_optional(hint: Any) -> bool:
    return NoneType in typing.get_args(hint) if is_union(hint) else hint is Any


NoneType = type(None)


def is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def inner_type(hint: Any) -> Any:
    """`X | None` -> X (the first non-None member of a union)."""
    if is_union(hint):
        return next((arg for arg in typing.get_args(hint) if arg is not NoneType), Any)
    return hint


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """The declared type of each field of a dataclass (annotations may be strings); a field whose annotation
    cannot be resolved gets Any."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a user's recipe may annotate with names its module does not import
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def from_text(text: str, hint: Any, key: str, interpolate: bool = True) -> Any:
    """A command-line value (the text after `key=`) read by the option's type; with `interpolate`, a value holding
    `${...}` is kept as text for OmegaConf to resolve."""
    target = inner_type(hint)
    if interpolate and INTERPOLATION in text:
        return text
    if target is str or (target is Any and not text.lstrip().startswith(("[", "{"))):
        unquoted = unquote(text)
        if unquoted is None and text.strip() == NULL:
            return null_for(hint, key, text.strip())
        return unquoted if unquoted is not None else text if target is str else natural(text.strip())
    if target in (bool, int, float):
        return convert(NullText(NULL) if text.strip() == NULL else text, hint, key)
    try:
        parsed = yaml.load(text, Loader=TextLoader)  # noqa: S506 (no implicit types, no object tags)
    except yaml.YAMLError as e:
        raise ConfigError(f"bad value for '{key}': cannot read '{text}' ({first_line(e)}); "
                          f"{example(hint, key)}") from None
    return convert(NullText(text) if parsed is None else parsed, hint, key)


def convert(value: Any, hint: Any, key: str) -> Any:
    """A value read from YAML text (text, NullText, lists and dicts of them) converted to the option's type."""
    if isinstance(value, NullText):
        return null_for(hint, key, str(value))
    if isinstance(value, str) and INTERPOLATION in value:
        return value
    target = inner_type(hint)
    origin = typing.get_origin(target)
    if target is Any:
        return natural(value)
    if target is str:
        return value if isinstance(value, str) else wrong_type(value, hint, key)
    if target is bool:
        return to_bool(value, hint, key)
    if target in (int, float):
        return to_number(value, target, hint, key)
    if origin is list:
        if not isinstance(value, list):
            wrong_type(value, hint, key)
        (item_type,) = typing.get_args(target) or (Any,)
        return [convert(text_of(item), item_type, key) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            wrong_type(value, hint, key)
        key_type, value_type = typing.get_args(target) or (Any, Any)
        return {convert(text_of(k), key_type, key): convert(text_of(v), value_type, key) for k, v in value.items()}
    return value


def text_of(item: Any) -> Any:
    """An item of a list or mapping: a null there is the text it was written as (a label named `null`)."""
    return str(item) if isinstance(item, NullText) and item else item


def null_for(hint: Any, key: str, written: str) -> None:
    if is_optional(hint):
        return None
    if inner_type(hint) is str and written:
        return written
    raise ConfigError(f"'{key}' cannot be unset ({written or 'an empty value'}): give it a value; "
                      f"{example(hint, key)}")


def to_bool(value: Any, hint: Any, key: str) -> bool:
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise ConfigError(f"bad value for '{key}': '{value}' is not true or false; e.g. {key}=true")


def to_number(value: Any, target: type, hint: Any, key: str) -> int | float:
    text = str(value).strip() if isinstance(value, str) else None
    try:
        return float(text) if target is float else int(text)
    except (TypeError, ValueError):
        kind = "a whole number" if target is int else "a number"
        raise ConfigError(f"bad value for '{key}': '{value}' is not {kind}; {example(hint, key)}") from None


def natural(value: Any) -> Any:
    """An untyped option's value: numbers as numbers, lists and mappings item by item, the rest as text."""
    if isinstance(value, NullText):
        return None
    if isinstance(value, list):
        return [natural(item) for item in value]
    if isinstance(value, dict):
        return {natural(k): natural(v) for k, v in value.items()}
    if isinstance(value, str):
        for number in (int, float):
            try:
                return number(value.strip())
            except ValueError:
                pass
    return value


def unquote(text: str) -> str | None:
    """The text inside one pair of matching outer quotes, else None."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        return stripped[1:-1]
    return None


def wrong_type(value: Any, hint: Any, key: str) -> Any:
    kind = "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else f"'{value}'"
    raise ConfigError(f"bad value for '{key}': it takes {type_name(hint)}, not {kind}; {example(hint, key)}")


def type_name(hint: Any) -> str:
    target = inner_type(hint)
    origin = typing.get_origin(target)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return {str: "text", bool: "true or false", int: "a whole number", float: "a number"}.get(target, "a value")


def example(hint: Any, key: str) -> str:
    """How to write a value of the option's type on the command line."""
    target = inner_type(hint)
    origin = typing.get_origin(target)
    sample = ("[a, b]" if origin is list else "{a: 'text about a'}" if origin is dict
              else {bool: "true", int: "3", float: "0.5"}.get(target, "VALUE"))
    unset = f" (or {key}=null)" if is_optional(hint) else ""
    return f"e.g. {key}={sample}{unset}"


def first_line(error: Exception) -> str:
    return " ".join(str(error).split())[:160]


def format_value(value: Any) -> str:
    """A value written as `from_text` reads it back (what `--help` prints as each option's default)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return f"'{value}'" if value.strip() in (NULL, "") or unquote(value) is not None else value
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip()


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings (the string under each field) of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
                docs[node.target.id] = str(after.value.value)
    return docs


def list_entry_type(hint: Any) -> type | None:
    """The section type of a list of sections (`multitask.tasks`), None for any other type."""
    args = typing.get_args(inner_type(hint))
    if typing.get_origin(inner_type(hint)) is list and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def entry_fields(entry: type) -> str:
    """`--help`'s line on a list of sections: each entry's fields, and that the list is written in a --config YAML."""
    names = [f"{f.name}.*" if dataclasses.is_dataclass(f.default_factory()
                                                       if f.default_factory is not dataclasses.MISSING else f.default)
             else f.name for f in dataclasses.fields(entry)]
    return (f"Each entry has the fields {', '.join(names)} (a section's options under its name); give the list in a "
            f"--config YAML file, one `- name: ...` item per entry.")


def describe(cfg: Any) -> str:
    """Every option with its default and one-line doc, for `--help`."""
    lines = []

    def walk(obj: Any, prefix: str) -> None:
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            lines.append(f"  {prefix}{f.name}={format_value(value)}")
            text = " ".join(docs.get(f.name, "").split())
            if (entry := list_entry_type(field_types(type(obj))[f.name])) is not None:
                text += f" {entry_fields(entry)}"
            if text.strip():
                lines.extend(textwrap.wrap(text.strip(), width=114, initial_indent="      ",
                                           subsequent_indent="      "))

    walk(cfg, "")
    return "\n".join(lines)
