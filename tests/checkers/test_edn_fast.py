"""The fast EDN reader gives what edn_format gives, on every corpus file and on random EDN,
and hands anything outside its subset back to edn_format."""

from __future__ import annotations

import edn_format
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkers import edn_fast, formats

from .conftest import CORPUS


def _reference(text: str) -> list:
    return [formats._from_edn(v) for v in edn_format.loads_all(text)]


def _edn_files() -> list:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".edn", ".txt")
                  and formats.detect(str(p), p.read_text()) in ("edn", "porcupine-kv"))


@pytest.mark.parametrize("path", _edn_files(), ids=lambda p: p.name)
def test_agrees_with_edn_format_on_every_corpus_file(path):
    text = path.read_text()
    fast = edn_fast.loads_all(text)
    assert fast is not None, "a corpus file fell outside the fast subset"
    assert fast == _reference(text)
    assert formats.parse_edn(text).ops == formats._parse_edn_slowly(text).ops


def test_the_corpus_has_edn_files():
    assert len(_edn_files()) >= 6


JEPSEN = """\
[{:type :invoke, :f :txn, :value [[:read :x nil] [:write :y 2]], :process 3, :time 76, :index 0}
 #jepsen.history.Op{:type :ok, :f :txn, :value [[:read :x 1] [:write :y 2]], :process 3,
                    :time 99, :index 1}
 {:type :info, :f :start-partition, :value {"n1" ["n2" "n3"]}, :process :nemesis,
  :error "partition \\"halves\\"\\n", :compare-failed true, :v #{3 1 2}, :empty {}}
 ; a comment
 {:process 0, :type :fail, :f :cas, :value [1 -2], :t 1.5e3, :b false, :n (1 2 [])}]
"""


def test_agrees_on_jepsen_records_strings_sets_and_comments():
    fast = edn_fast.loads_all(JEPSEN)
    assert fast is not None
    assert fast == _reference(JEPSEN)
    ops = fast[0]
    assert ops[2]["compare_failed"] is True and ops[2]["error"] == 'partition "halves"\n'
    assert ops[2]["v"] == [1, 2, 3] and ops[2]["value"] == {"n1": ["n2", "n3"]}


@pytest.mark.parametrize("text", [
    "{:a foo}",  # a symbol
    "{:a \\c}",  # a character
    "{:a #inst \"2020-01-01\"}",  # another tag
    "{:a 1N}", "{:a 1/2}", "{:a 1.5M}",  # big and ratio numbers
    "{:a null}", "{:a NaN}",  # symbols JSON would read as values
    "{:a \"\\101\"}",  # an octal escape
    "{:a 1 :b}",  # an odd map
    "{[1] 2}",  # a collection as a key
    "#{[1] [2]}",  # a set of collections
    "#_ {:a 1}",  # a discard
    "{:a \"unterminated}",
    "{:a [1 2}",
])
def test_outside_the_subset_it_steps_aside(text):
    assert edn_fast.loads_all(text) is None


def test_values_nested_too_deeply_go_to_the_slow_path_that_names_them():
    text = "{:process 0, :type :invoke, :f :write, :value " + "[" * 70 + "]" * 70 + "}\n"
    assert edn_fast.loads_all(text) is None
    with pytest.raises(formats.HistoryError, match="nests deeper"):
        formats.parse_edn(text)


# Random EDN, printed with random spacing: keywords, strings with JSON's escapes, numbers,
# nil/true/false, vectors, lists, maps with keyword or string keys, sets of scalars.
_names = st.from_regex(r"[a-z][a-z0-9\-?!*.]{0,6}(/[a-z]{1,3})?", fullmatch=True)
_keywords = _names.map(lambda n: ":" + n)
_strings = st.text(st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\n\t"),
                   max_size=8).map(
    lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"')
_ints = st.integers(-10**20, 10**20).map(str)
_floats = st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr)
_scalars = st.one_of(_keywords, _strings, _ints, _floats, st.sampled_from(["nil", "true",
                                                                              "false"]))


@st.composite
def _edn_text(draw, depth: int = 0) -> str:
    sep = draw(st.sampled_from([" ", ", ", "\n ", "  ,", "\t"]))
    if depth >= 3:
        return draw(_scalars)
    kind = draw(st.sampled_from(["scalar", "scalar", "vector", "list", "map", "set"]))
    if kind == "scalar":
        return draw(_scalars)
    if kind == "set":
        # of one type: a set of mixed ones has no order, and edn_format's is its own
        items = draw(st.one_of(st.lists(_keywords, max_size=4, unique=True),
                               st.lists(_ints, max_size=4, unique_by=int)))
        return "#{" + sep.join(items) + "}"
    if kind == "map":
        keys = draw(st.lists(st.one_of(_keywords, _strings), max_size=4, unique=True))
        vals = [draw(_edn_text(depth + 1)) for _ in keys]
        return "{" + sep.join(f"{k} {v}" for k, v in zip(keys, vals, strict=True)) + "}"
    items = [draw(_edn_text(depth + 1)) for _ in range(draw(st.integers(0, 4)))]
    o, c = ("[", "]") if kind == "vector" else ("(", ")")
    return o + sep.join(items) + c


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_edn_text(), min_size=1, max_size=4))
def test_agrees_with_edn_format_on_random_edn(forms):
    text = "\n".join(forms)
    try:
        expected = _reference(text)
    except Exception:  # noqa: BLE001 - edn_format refuses it: so must we
        assert edn_fast.loads_all(text) is None
        return
    fast = edn_fast.loads_all(text)
    assert fast is not None, text
    assert fast == expected, text
