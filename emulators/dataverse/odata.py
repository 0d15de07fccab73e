"""OData URL grammar the emulator understands: path segments with keys, the Prefer header, `$filter`
(comparisons, and/or/not, contains/startswith/endswith), `$orderby`, paging cookies and delta tokens."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from .errors import INVALID_VERSION_STAMP, QUERY_SYNTAX, ApiError, bad_request

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_PAGE_SIZE = 5000


def syntax_error(message: str) -> ApiError:
    return ApiError(400, QUERY_SYNTAX, message)


def is_guid(text: str) -> bool:
    return bool(GUID.match(text))


# -- path -----------------------------------------------------------------------------------------------


@dataclass
class Segment:
    name: str
    key: str | None = None  # raw text between the parentheses


# What precedes an entity set in a URL a client may send (absolute, rooted, or relative to the Web API):
# a batch part's target, an @odata.bind reference.
API_PATH_PREFIX = re.compile(r"^(?:https?://[^/]+)?/?(?:api/data/v9\.\d/)?")


def split_path(path: str) -> list[Segment]:
    """`contacts(emailaddress1='a/b')/x` -> segments, respecting quotes and parentheses."""
    segments, current, key, depth, quoted = [], "", None, 0, False
    for char in path:
        if char == "'" and depth:
            quoted = not quoted
        if quoted:
            key += char
            continue
        if char == "(":
            depth += 1
            if depth == 1:
                key = ""
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                continue
        if depth:
            key += char
        elif char == "/":
            segments.append(Segment(current, key))
            current, key = "", None
        else:
            current += char
    if depth or quoted:
        raise syntax_error(f"Bad Request - Error in query syntax: unbalanced parentheses in '{path}'.")
    if current or key is not None:
        segments.append(Segment(current, key))
    return segments


def parse_literal(text: str) -> Any:
    text = text.strip()
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if is_guid(text):
        return text.lower()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*[mMdD]?|-?\d+[mMdD]", text):
        return float(text.rstrip("mMdD"))
    enum = re.fullmatch(r"[A-Za-z_][\w.]*'((?:[^']|'')*)'", text)
    if enum:
        return enum.group(1).replace("''", "'")
    date = parse_datetime_literal(text)
    if date is not None:
        return date
    raise syntax_error(f"Syntax error: the literal '{text}' is not valid.")


def parse_key(raw: str) -> str | dict[str, Any]:
    """`<guid>` -> the guid; `k1='a',k2=5` -> {"k1": "a", "k2": 5}."""
    raw = raw.strip()
    if is_guid(raw):
        return raw.lower()
    parts, current, quoted = [], "", False
    for char in raw:
        if char == "'":
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    values = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise syntax_error(f"Bad Request - Error in query syntax: the key '({raw})' is not valid.")
        values[name.strip()] = parse_literal(value)
    return values


# -- Prefer ----------------------------------------------------------------------------------------------


def split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


@dataclass
class Prefer:
    max_page_size: int | None = None
    track_changes: bool = False
    annotations: tuple[str, ...] = ()
    return_representation: bool = False
    continue_on_error: bool = False

    @classmethod
    def parse(cls, headers: list[str]) -> Prefer:
        prefer = cls()
        for header in headers:
            for item in split_outside_quotes(header, ","):
                name, _, value = item.partition("=")
                name, value = name.strip().lower(), value.strip().strip('"')
                if name == "odata.maxpagesize":
                    if not value.isdigit() or int(value) < 1:
                        raise bad_request(f"The value '{value}' of odata.maxpagesize is not valid.")
                    prefer.max_page_size = min(int(value), MAX_PAGE_SIZE)
                elif name == "odata.track-changes":
                    prefer.track_changes = True
                elif name in ("odata.include-annotations", "include-annotations"):
                    prefer.annotations = tuple(a.strip() for a in value.split(",") if a.strip())
                elif name == "return" and value == "representation":
                    prefer.return_representation = True
                elif name == "odata.continue-on-error":
                    prefer.continue_on_error = True
        return prefer

    def wants(self, annotation: str) -> bool:
        for pattern in self.annotations:
            if pattern == "*" or pattern == annotation:
                return True
            if pattern.endswith(".*") and annotation.startswith(pattern[:-1]):
                return True
        return False


# -- $filter ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<enum>[A-Za-z_][\w.]*'(?:[^']|'')*')
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
    | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?(?![\w:]))
    | (?P<number>-?\d+(?:\.\d+)?[mMdD]?(?![\w.]))
    | (?P<punct>[(),])
    | (?P<name>[A-Za-z_$@][\w./]*)
    )""",
    re.VERBOSE,
)
_COMPARISONS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_FUNCTIONS = {
    "contains": lambda a, b: a is not None and b is not None and b in a,
    "startswith": lambda a, b: a is not None and b is not None and a.startswith(b),
    "endswith": lambda a, b: a is not None and b is not None and a.endswith(b),
}

Predicate = Callable[[Any], bool]
Resolver = Callable[[str], Callable[[Any], Any]]  # column name -> getter(row)


def parse_datetime_literal(text: str) -> str | None:
    """Normalise a date or datetime literal to the stored forms `YYYY-MM-DD` / `YYYY-MM-DDTHH:MM:SSZ`."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return text
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fold(value: Any) -> Any:
    """Dataverse compares text case-insensitively (SQL collation); lookups compare by id."""
    if isinstance(value, tuple):
        value = value[1]
    return value.casefold() if isinstance(value, str) else value


class _FilterParser:
    def __init__(self, text: str, resolve: Resolver) -> None:
        self.text = text
        self.resolve = resolve
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise syntax_error(f"Syntax error at position {position} in '{text}'.")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1].lower() != value):
            expected = f"'{value}'" if value else "more input"
            raise syntax_error(f"Syntax error: expected {expected} in '{self.text}'.")
        self.index += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.or_expr()
        if self.peek() is not None:
            raise syntax_error(f"Syntax error at '{self.peek()[1]}' in '{self.text}'.")
        return predicate

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while self._keyword("or"):
            right = self.and_expr()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.not_expr()
        while self._keyword("and"):
            right = self.not_expr()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def not_expr(self) -> Predicate:
        if self._keyword("not"):
            inner = self.not_expr()
            return lambda row: not inner(row)
        return self.primary()

    def _keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "name" and token[1].lower() == word:
            self.index += 1
            return True
        return False

    def primary(self) -> Predicate:
        token = self.peek()
        if token is None:
            raise syntax_error(f"Syntax error: unexpected end of '{self.text}'.")
        if token[1] == "(":
            self.take("(")
            inner = self.or_expr()
            self.take(")")
            return inner
        if token[0] == "name" and token[1].lower() in _FUNCTIONS:
            function = _FUNCTIONS[token[1].lower()]
            self.index += 1
            self.take("(")
            left = self.operand()
            self.take(",")
            right = self.operand()
            self.take(")")
            return lambda row: bool(function(_fold(left(row)), _fold(right(row))))
        left = self.operand()
        operator = self.take()[1].lower()
        if operator not in _COMPARISONS:
            raise syntax_error(f"Syntax error: unknown operator '{operator}' in '{self.text}'.")
        right = self.operand()
        compare = _COMPARISONS[operator]

        def comparison(row):
            a, b = _fold(left(row)), _fold(right(row))
            try:
                return compare(a, b)
            except TypeError:
                return False

        return comparison

    def operand(self) -> Callable[[Any], Any]:
        kind, text = self.take()
        if kind == "name" and text.lower() not in ("true", "false", "null"):
            return self.resolve(text)
        value = parse_literal(text)
        return lambda row: value


def compile_filter(text: str, resolve: Resolver) -> Predicate:
    return _FilterParser(text, resolve).parse()


def parse_orderby(text: str, resolve: Resolver) -> list[tuple[Callable[[Any], Any], bool]]:
    order = []
    for item in split_outside_quotes(text, ","):
        parts = item.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise syntax_error(f"Syntax error in $orderby '{text}'.")
        order.append((resolve(parts[0]), len(parts) == 2 and parts[1].lower() == "desc"))
    return order


def sort_rows(rows: list, order: list[tuple[Callable[[Any], Any], bool]]) -> list:
    """Stable multi-key sort; nulls first ascending, like SQL Server."""
    for getter, descending in reversed(order):
        rows.sort(key=lambda row, g=getter: (_fold(g(row)) is not None, _fold(g(row))), reverse=descending)
    return rows


# -- paging cookies and delta tokens ---------------------------------------------------------------------

_COOKIE = re.compile(r'^<cookie((?:\s+\w+="[^"]*")*)\s*/>$')


def encode_cookie(**fields: int | str) -> str:
    """An opaque `$skiptoken` shaped like Dataverse's paging cookie."""
    attributes = " ".join(f'{name}="{value}"' for name, value in fields.items())
    return f"<cookie {attributes} />"


def decode_cookie(token: str) -> dict[str, str]:
    match = _COOKIE.match(unquote(token).strip())
    if match is None:
        raise bad_request("The $skiptoken paging cookie is not valid.")
    return dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))


def encode_delta_token(version: int, issued: datetime) -> str:
    return f"{version}!{issued.strftime('%m/%d/%Y %H:%M:%S')}"


def decode_delta_token(token: str) -> tuple[int, datetime]:
    version, sep, stamp = unquote(token).partition("!")
    try:
        if not sep:
            raise ValueError(token)
        return int(version), datetime.strptime(stamp, "%m/%d/%Y %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(400, INVALID_VERSION_STAMP, "Invalid version stamp") from None


def quote_value(value: str, safe: str = "',()*$:@;") -> str:
    """Encode a query-string value the way the service writes its links (lower-case escapes)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value, safe=safe))


def new_guid() -> str:
    return str(uuid.uuid4())
