"""A fast reader for the subset of EDN that Jepsen and Knossos write.

edn_format parses about 0.3 MB/s (a character at a time, in Python); a Jepsen history of a
few MB then takes seconds to read and a fraction of that to check. This reader splits the text
into tokens with one regular expression, translates each distinct token to JSON once, joins
them, and parses that with the json module's C scanner; maps and sets travel as lists headed
by a marker and become dicts again at C speed where a history is the usual flat one.

The subset: maps, vectors, lists, sets, keywords, integers, floats, strings (with the escapes
JSON shares), nil, true, false, comments, and the record tags `#jepsen.history.Op` and
`#knossos.op.Op`. Anything else (symbols, characters, other tags, big or ratio numbers,
octal escapes, a map with an odd count) makes `loads_all` return None and the caller uses
edn_format. The values it gives are those formats._from_edn makes of edn_format's: keywords
become their names, sets sorted lists, lists and vectors lists. tests/checkers check that both
agree on every corpus file and on random EDN.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

_MAP, _SET = "{", "#"  # markers heading a map's or a set's list: no keyword or string is one
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# an atom (keyword, number, symbol), a bracket, a string, a set's opening, a tag, a comment,
# or a stray character (an unterminated string's quote); the commonest first
_TOKEN = re.compile(r'[^\s,\[\](){}";#][^\s,\[\](){}";]*|[\[\](){}]|"[^"\\]*(?:\\.[^"\\]*)*"'
                    r'|#\{|#[^\s,\[\](){}";]*|;[^\n]*|[^\s,]', re.S)
# what each fixed token becomes; \x00 marks the commas that the join puts after an opening and
# before a closing bracket, which JSON does not allow
_FIXED = {
    "{": '["{"', "#{": '["#"', "[": "[\x00", "(": "[\x00",
    "}": "\x00]", "]": "\x00]", ")": "\x00]",
    "nil": "null", "true": "true", "false": "false", "null": "\x00",  # null: a symbol
    "#jepsen.history.Op": "", "#knossos.op.Op": "",
}
_ESCAPES = re.compile(r'\\(?:["\\bfnrt]|u[0-9a-fA-F]{4})')  # the escapes EDN and JSON share


# No value this reader gives nests deeper (history.MAX_VALUE_DEPTH counts a value's own
# levels; the op map and a top-level vector add two).
MAX_DEPTH = 64
_BRACKETS_ONLY = re.compile(r'"(?:[^"\\]|\\.)*"|[^\[\]]+', re.S)
_DELTA = {ord("["): 1, ord("]"): -1}


def _depth(joined: str) -> int:
    """How deeply the brackets of JSON text nest (strings skipped)."""
    brackets = _BRACKETS_ONLY.sub("", joined)
    opened = brackets.count("[")
    if opened <= MAX_DEPTH:
        return opened  # a bound, and cheap
    return max(itertools.accumulate(map(_DELTA.__getitem__, brackets.encode())), default=0)


class _NotSubset(Exception):
    pass


def loads_all(text: str) -> list[Any] | None:
    """The top-level values of EDN `text`, or None when it is outside the subset."""
    if _FORBIDDEN.search(text):
        return None
    tokens = _TOKEN.findall(text)
    # each distinct token is translated once: a history repeats its keywords endlessly
    as_json = {}
    for t in set(tokens):
        j = _translate(t)
        if j is None:
            return None
        as_json[t] = j
    out = list(map(as_json.__getitem__, tokens))
    if ";" in text or "#" in text:
        out = list(filter(None, out))  # comments and Jepsen's record tags
    joined = ",".join(out).replace(",\x00]", "]").replace("[\x00,", "[").replace("[\x00]", "[]")
    if "\x00" in joined or ",," in joined:
        return None  # a bracket the tokens do not balance, or a tag that tags nothing
    if _depth(joined) > MAX_DEPTH:
        return None  # the slow path names the op that nests too deeply
    try:
        raw = json.loads("[" + joined + "]", strict=False, parse_constant=_constant)
    except (ValueError, RecursionError, _NotSubset):
        return None
    try:
        plain = '"\x01' not in joined and '["#"' not in joined
        flat = _flat_ops(raw, joined.count('["{"'), plain, "compare-failed" in text)
        if flat is not None:
            return flat
        return [_build(v) if type(v) is list else _plain(v) for v in raw]
    except (_NotSubset, RecursionError, TypeError):  # TypeError: a collection as a key
        return None


# strings marked so as not to be taken for a marker or for the keyword :compare-failed
_MARKED = frozenset(['"{"', '"#"', '"compare-failed"'])


def _translate(t: str) -> str | None:
    """One token as JSON ("" to drop it), or None when it is outside the subset."""
    f = _FIXED.get(t)
    if f is not None:
        return f
    c = t[0]
    if c == '"':
        if len(t) < 2 or t[-1] != '"' or ("\\" in t and "\\" in _ESCAPES.sub("", t)):
            return None  # unterminated, or an escape JSON lacks (octal, a short \u)
        return '"\x01' + t[1:] if t in _MARKED else t
    if "\\" in t:
        return None  # a character literal
    if c == ":":
        return '"' + t[1:] + '"'
    if c == ";":
        return ""
    if c == "#":
        return None  # a tag other than Jepsen's, #_, ##Inf
    return t


def _flat_ops(raw: list, n_maps: int, plain: bool, renamed: bool) -> list[Any] | None:
    """A history of op maps (alone or in one vector), built at C speed: each op's keys and
    values paired by zip, and only the ops that hold a map, a set or a marked string rebuilt
    (a nemesis op's value, say); `plain` when there are none of the last two anywhere;
    `renamed` when the keyword :compare-failed may be a key."""
    ops = raw[0] if len(raw) == 1 and type(raw[0]) is list and raw[0][:1] != [_MAP] else raw
    for o in ops:
        if type(o) is not list or len(o) % 2 == 0 or o[0] != _MAP:
            return None
    built = [dict(zip(o[1::2], o[2::2], strict=True)) for o in ops]
    if renamed:
        for d in built:
            if "compare-failed" in d:
                d["compare_failed"] = d.pop("compare-failed")  # as formats._edn_key names it
    if n_maps != len(ops) or not plain:
        for n, o in enumerate(ops):
            if plain:
                if list not in set(map(type, o)):
                    continue  # only scalars: as zip built it
                if not any(type(x) is list and x and (list in set(map(type, x))
                                                      or x[0] == _MAP or x[0] == _SET)
                           for x in o):
                    continue  # vectors of scalars, as zip built them
            for x in o:
                if type(x) is list or (type(x) is str and x[:1] == "\x01"):
                    built[n] = _build(o)
                    break
    return [built] if ops is not raw else built


def _constant(name: str) -> Any:
    raise _NotSubset  # NaN, Infinity: symbols in EDN


def _build(v: list) -> Any:
    if not v:
        return v
    head = v[0]
    if head == _MAP and type(head) is str:
        if len(v) % 2 == 0:
            raise _NotSubset  # an odd count of keys and values
        out: dict[Any, Any] = {}
        for i in range(1, len(v), 2):
            k = v[i]
            tk = type(k)
            if tk is str:
                if k[:1] == "\x01":
                    k = k[1:]
                elif k == "compare-failed":
                    k = "compare_failed"  # as formats._edn_key names the keyword
            elif tk is list:
                raise _NotSubset  # a collection as a key: edn_format's business
            x = v[i + 1]
            out[k] = _build(x) if type(x) is list else _plain(x)
        return out
    if head == _SET and type(head) is str:
        items = [_build(x) if type(x) is list else _plain(x) for x in v[1:]]
        if any(isinstance(x, list | dict) for x in items):
            raise _NotSubset  # a set of collections: its order is edn_format's
        try:
            return sorted(set(items))
        except TypeError:
            raise _NotSubset from None
    return [_build(x) if type(x) is list else _plain(x) for x in v]


def _plain(x: Any) -> Any:
    return x[1:] if type(x) is str and x[:1] == "\x01" else x
