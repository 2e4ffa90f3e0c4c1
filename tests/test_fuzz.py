"""Property-based fuzzing of the data readers and the config loader: whatever the input, they load it or
raise our own TuneforgeError (which the CLI prints as one line), never anything else."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tuneforge.tasks.classification import label_set
from tuneforge.config import Config, load_config
from tuneforge.data.records import read_records, require_text
from tuneforge.errors import TuneforgeError
from tuneforge.data.splits import carve

# TUNEFORGE_FUZZ_EXAMPLES=5000 for a long hunt; the default keeps the suite fast
FUZZ = settings(max_examples=int(os.environ.get("TUNEFORGE_FUZZ_EXAMPLES", "80")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                           max_leaves=8)
# text that stresses line handling: separators that str.splitlines honours but files do not
tricky_text = st.text(alphabet=st.sampled_from(list("ab ,\"'\t\n\r\u2028\u0085\x0b\x0c\x1c\ufeff\x00é")) | st.characters(),
                      max_size=20)


def only_our_errors(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except TuneforgeError as e:
        assert str(e).strip(), "an error must say something"
        return None


def in_file(suffix: str, data: bytes, check: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        path.write_bytes(data)
        return check(path)


def digest(path: Path) -> list[Any] | None:
    """Read, then everything that inspects raw records before training: columns, labels, splits."""
    def run() -> list[Any]:
        records = read_records(path)
        for fn in (lambda: require_text(records, "text"), lambda: label_set(records, "label"),
                   lambda: carve(records, 0.3, "label", None, 0), lambda: carve(records, 0.3, None, "group", 0)):
            only_our_errors(fn)
        return records
    return only_our_errors(run)


# ---------------------------------------------------------------- data readers

@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]))
@example(data=b'{"text": ' + b"[" * 50000 + b"]" * 50000 + b"}\n", suffix=".jsonl")
@example(data=b"\xef\xbb\xbftext,label\n\xff,1\n", suffix=".csv")
@example(data=b'text,label\n"unclosed,1\n', suffix=".csv")
@example(data=b"text,label\na\x00b,1\n", suffix=".csv")
def test_readers_on_arbitrary_bytes(data: bytes, suffix: str) -> None:
    in_file(suffix, data, digest)


row_fields = st.dictionaries(st.sampled_from(["text", "label", "group", "id"]) | st.text(max_size=4), json_values,
                             max_size=4)


@FUZZ
@given(rows=st.lists(row_fields | json_values, max_size=12), junk=st.lists(st.text(max_size=10), max_size=2))
def test_jsonl_reader_on_structured_rows(rows: list[Any], junk: list[str]) -> None:
    lines = [json.dumps(r) for r in rows] + junk
    in_file(".jsonl", ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), digest)


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries({"text": tricky_text, "label": st.sampled_from(["a", "b", "c"])}),
                     min_size=1, max_size=8))
def test_jsonl_round_trip(rows: list[dict[str, Any]]) -> None:
    """Whatever characters the texts hold, each record comes back whole, on its own line number."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    records = in_file(".jsonl", text.encode("utf-8", "surrogatepass"), lambda p: only_our_errors(lambda: read_records(p)))
    if records is not None:
        assert [r.fields for r in records] == rows
        assert [r.line for r in records] == list(range(1, len(rows) + 1))


@FUZZ
@given(rows=st.lists(st.lists(tricky_text, min_size=2, max_size=2), min_size=1, max_size=8),
       delimiter=st.sampled_from([",", "\t"]))
def test_csv_round_trip(rows: list[list[str]], delimiter: str) -> None:
    """What Python's csv writer writes, the reader reads back field for field (blank rows aside)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    suffix = ".csv" if delimiter == "," else ".tsv"
    records = in_file(suffix, buffer.getvalue().encode("utf-8", "surrogatepass"),
                      lambda p: only_our_errors(lambda: read_records(p)))
    kept = [r for r in rows if any(c.strip() for c in r)]
    if records is not None:
        assert [[r.fields["text"], r.fields["label"]] for r in records] == kept
    else:  # refused: only for NUL bytes (csv cannot hold them), surrogates (not UTF-8) or no rows left
        assert not kept or any("\x00" in c or any(0xD800 <= ord(ch) <= 0xDFFF for ch in c) for r in rows for c in r)


# ---------------------------------------------------------------- config loader

SECTIONS = {f.name: f.type for f in Config.__dataclass_fields__.values()}
KEYS = {"method": ["name", "r", "alpha", "targets", "dropout"], "data": ["train", "validation", "test", "text", "label",
                                                                        "max_length", "limit", "group"],
        "train": ["epochs", "lr", "batch_size", "warmup", "max_steps", "early_stopping", "checkpoint_every",
                  "nan_policy", "precision", "seed"], "eval": ["base", "batch_size"], "privacy": ["pii"]}
section_values = st.one_of(json_values, *[st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), json_values,
                                                          max_size=4) for keys in KEYS.values()])
configs = st.dictionaries(st.sampled_from(sorted(SECTIONS)) | st.text(max_size=6), section_values, max_size=8)


def load_or_error(fn: Callable[[], Config]) -> None:
    cfg = only_our_errors(fn)
    assert cfg is None or isinstance(cfg, Config)


@FUZZ
@given(raw=configs)
@example(raw={"name": "x", "data": {"train": "t.jsonl"}, "train": {"lr": float("nan")}})
@example(raw={"name": "x", "data": {"train": "t.jsonl"}, "train": {"warmup": float("inf")}})
@example(raw={"name": "a\x00b", "data": {"train": "t.jsonl"}})
def test_config_loader_on_structured_input(raw: dict[str, Any]) -> None:
    load_or_error(lambda: load_config(None, base=raw))


@FUZZ
@given(text=st.text(max_size=300))
@example(text="name: x\ntrain: {lr: .nan}\n")
@example(text="&a [*a]")
@example(text="!!python/object:os.system {}")
@example(text="a: !!binary AAAA\n")
def test_config_loader_on_arbitrary_yaml(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        load_or_error(lambda: load_config(path))


@FUZZ
@given(overrides=st.lists(st.text(max_size=25) | st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["train.lr", "train", "data.train", "method.r", "name", "train.early_stopping.patience", "a.b.c", ""]),
    st.text(max_size=10)), max_size=4))
def test_config_overrides(overrides: list[str]) -> None:
    base = {"name": "x", "data": {"train": "t.jsonl"}}
    load_or_error(lambda: load_config(None, overrides, base=yaml.safe_load(yaml.safe_dump(base))))
