"""CloudWatch Logs JSON filter patterns, evaluated as CloudWatch documents them.

moto's `filter_log_events` understands only plain terms, so the alarms' metric
filters are checked with this instead: the subset of the JSON pattern syntax the
template uses, by the rules of "Filter pattern syntax for metric filters" (Amazon
CloudWatch Logs user guide): `{ $.field op value }` terms, `&&`, `||`, parentheses;
`=`/`!=` on a quoted string (where `*` matches any run of characters) or a number;
`<`, `<=`, `>`, `>=` on numbers; `IS NULL`; `NOT EXISTS`. A term on a field the event
lacks, or of the other type, does not match. A line that is not a JSON object matches
no JSON pattern. Anything else in a pattern raises, rather than guessing.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

_TOKEN = re.compile(r"""\s*(?:(?P<paren>[()])|(?P<logic>&&|\|\|)|(?P<selector>\$(?:\.[A-Za-z_][\w-]*)+)"""
                    r"""|(?P<op><=|>=|!=|=|<|>)|(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?)"""
                    r"""|(?P<word>IS NULL|NOT EXISTS))""")
_MISSING = object()
Term = Callable[[Any], bool]


def matches(pattern: str, line: str) -> bool:
    """Whether a metric filter with `pattern` counts the log event `line`."""
    text = pattern.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"not a JSON filter pattern: {pattern!r}")
    term = _Parser(_tokens(text[1:-1])).parse()
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and term(event)


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    text = text.rstrip()
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None or token.end() == position:
            raise ValueError(f"cannot read the pattern at {text[position:]!r}")
        kind = token.lastgroup or ""
        found.append((kind, token.group(kind)))
        position = token.end()
    return found


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def parse(self) -> Term:
        term = self.either()
        if self.at != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.at]}")
        return term

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, kind: str) -> str:
        found_kind, value = self.peek()
        if found_kind != kind:
            raise ValueError(f"expected {kind}, found {found_kind} {value!r}")
        self.at += 1
        return value

    def either(self) -> Term:
        terms = [self.both()]
        while self.peek() == ("logic", "||"):
            self.at += 1
            terms.append(self.both())
        return lambda event: any(term(event) for term in terms)

    def both(self) -> Term:
        terms = [self.single()]
        while self.peek() == ("logic", "&&"):
            self.at += 1
            terms.append(self.single())
        return lambda event: all(term(event) for term in terms)

    def single(self) -> Term:
        if self.peek() == ("paren", "("):
            self.at += 1
            term = self.either()
            self.take("paren")
            return term
        path = self.take("selector")[2:].split(".")
        if self.peek()[0] == "word":
            word = self.take("word")
            if word == "IS NULL":
                return lambda event: _select(event, path) is None
            return lambda event: _select(event, path) is _MISSING
        op = self.take("op")
        kind, raw = self.peek()
        self.at += 1
        if kind == "string":
            return _string_term(path, op, json.loads(raw))
        if kind == "number":
            return _number_term(path, op, float(raw))
        raise ValueError(f"expected a value after {op}, found {raw!r}")


def _select(event: Any, path: list[str]) -> Any:
    for name in path:
        if not isinstance(event, dict) or name not in event:
            return _MISSING
        event = event[name]
    return event


def _string_term(path: list[str], op: str, value: str) -> Term:
    if op not in {"=", "!="}:
        raise ValueError(f"{op} compares numbers, not strings")
    wanted = re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", value)),
                        re.S)

    def term(event: Any) -> bool:
        found = _select(event, path)
        if not isinstance(found, str):
            return False
        return bool(wanted.fullmatch(found)) == (op == "=")

    return term


def _number_term(path: list[str], op: str, value: float) -> Term:
    compare: dict[str, Callable[[float, float], bool]] = {
        "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}

    def term(event: Any) -> bool:
        found = _select(event, path)
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            return False
        return compare[op](float(found), value)

    return term
