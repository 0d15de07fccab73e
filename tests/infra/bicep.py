"""Just enough of a Bicep reader for the infra tests: the entries of one object variable and the default
values of the parameters, read with a scanner that knows strings (with `${...}` interpolation),
multi-line strings, comments and brackets, so a brace or colon inside a value never misleads it."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"^param\s+(\w+)\s+\w+(?:\s*=\s*(.+?))?\s*$", re.MULTILINE)
_OPENING = {"{": "}", "[": "]", "(": ")"}


class BicepReadError(ValueError):
    pass


def _end_of_string(text: str, i: int) -> int:
    """`i` is at an opening quote: the index just after the closing one."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        if end < 0:
            raise BicepReadError("unterminated multi-line string")
        return end + 3
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == "'":
            return i + 1
        elif text.startswith("${", i):
            i = scan(text, i + 2, stop="}") + 1
        else:
            i += 1
    raise BicepReadError("unterminated string")


def scan(text: str, i: int, *, stop: str) -> int:
    """The index of the first character of `stop` found outside strings, comments and brackets, at or
    after `i` (a `//` comment ends the scan like a newline when `stop` holds one)."""
    closers: list[str] = []
    while i < len(text):
        char = text[i]
        if not closers and char in stop:
            return i
        if char == "'":
            i = _end_of_string(text, i)
            continue
        if text.startswith("//", i):
            if not closers and "\n" in stop:
                return i
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise BicepReadError("unterminated comment")
            i = end + 2
            continue
        if char in _OPENING:
            closers.append(_OPENING[char])
        elif char in "}])" and (not closers or closers.pop() != char):
            raise BicepReadError(f"unbalanced {char!r} at offset {i}")
        i += 1
    raise BicepReadError(f"none of {stop!r} found")


def _skip_blank(text: str, i: int) -> int:
    """Past whitespace, commas (single-line objects) and comments between two entries."""
    while i < len(text):
        if text[i] in " \t\r\n,":
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif text.startswith("/*", i):
            i = text.index("*/", i + 2) + 2
        else:
            return i
    return i


def object_entries(text: str, variable: str) -> dict[str, str]:
    """`var <variable> = { ... }` as {key: source text of its value}, top-level entries only, in order."""
    found = re.search(rf"^var\s+{re.escape(variable)}\s*=\s*\{{", text, re.MULTILINE)
    if found is None:
        raise BicepReadError(f"no `var {variable} = {{` in the file")
    entries: dict[str, str] = {}
    i = found.end()
    while True:
        i = _skip_blank(text, i)
        if i >= len(text):
            raise BicepReadError(f"`var {variable}` is not closed")
        if text[i] == "}":
            return entries
        if text[i] == "'":
            end = _end_of_string(text, i)
            key = text[i + 1 : end - 1]
            if "${" in key:
                raise BicepReadError(f"computed key {key!r}: the tests cannot know its name")
        else:
            name = _IDENTIFIER.match(text, i)
            if name is None:
                raise BicepReadError(f"expected a key at offset {i}: {text[i : i + 30]!r}")
            key, end = name.group(), name.end()
        colon = _skip_blank(text, end)
        if not text.startswith(":", colon):
            raise BicepReadError(f"expected ':' after {key!r}")
        value_start = colon + 1
        value_end = scan(text, value_start, stop="\n,}")
        if key.upper() in {k.upper() for k in entries}:
            raise BicepReadError(f"{key} is set twice (app setting names ignore case)")
        entries[key] = text[value_start:value_end].strip()
        i = value_end


def declared_parameters(text: str) -> dict[str, str | None]:
    """Every `param` of the file: {name: source text of its default, or None without one}."""
    return {name: default or None for name, default in _PARAM.findall(text)}


def parameter_defaults(text: str) -> dict[str, str | int | bool]:
    """Parameters whose default is a literal (string without interpolation, integer, boolean)."""
    defaults: dict[str, str | int | bool] = {}
    for name, default in declared_parameters(text).items():
        if default is None:
            continue
        if re.fullmatch(r"'[^'\\$]*'", default):
            defaults[name] = default[1:-1]
        elif re.fullmatch(r"-?\d+", default):
            defaults[name] = int(default)
        elif default in ("true", "false"):
            defaults[name] = default == "true"
    return defaults
