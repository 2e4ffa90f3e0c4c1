"""Readers (JSONL, CSV, Parquet, HF-on-disk), splits, and errors that name file:line."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tuneforge.tasks.classification import ClassificationTask, label_set
from tuneforge.data.records import Record, read_records, require_text
from tuneforge.errors import DataError
from tuneforge.data.splits import carve, kfold, load_splits

ROWS = [{"text": "good kettle", "label": "pos"}, {"text": "bad kettle", "label": "neg"}]


def test_jsonl_keeps_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    records = read_records(path)
    assert [r.fields["text"] for r in records] == ["a", "b"]
    assert [r.line for r in records] == [1, 3]  # blank lines skipped, numbering kept
    assert records[1].where == f"{path}:3"


def test_csv_and_tsv(tmp_path):
    (tmp_path / "d.csv").write_text('text,label\n"hello, world",pos\nbye,neg\n', encoding="utf-8")
    (tmp_path / "d.tsv").write_text("text\tlabel\nhello, world\tpos\n", encoding="utf-8")
    csv_rows = read_records(tmp_path / "d.csv")
    assert csv_rows[0].fields == {"text": "hello, world", "label": "pos"} and csv_rows[1].line == 3
    assert read_records(tmp_path / "d.tsv")[0].fields["text"] == "hello, world"


def test_parquet_and_hf_dataset_on_disk(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    assert [r.fields for r in read_records(tmp_path / "d.parquet")] == ROWS
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert [r.fields for r in read_records(tmp_path / "ds")] == ROWS


@pytest.mark.parametrize("content, line, message", [
    (b'{"text": "a", "label": "x"}\n{"text": "b", "label"\n', 2, "malformed JSON"),
    (b'{"text": "a"}\n["list"]\n', 2, "expected a JSON object"),
    (b'{"text": "caf\xe9", "label": "x"}\n', 1, "invalid UTF-8 byte 0xe9"),
    (b"", None, "file is empty"),
    (b"\n\n", None, "file is empty"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_records(path)
    assert info.value.line == line and str(path) in str(info.value)


def test_csv_ragged_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\na,pos\nb,neg,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv:3: row has 3 fields, header has 2"):
        read_records(path)


def test_missing_file_directory_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match="is a directory"):
        read_records(tmp_path)
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        read_records(tmp_path / "d.xlsx")


def test_missing_or_empty_text_names_the_line():
    records = [Record({"text": "ok"}, "f.jsonl", 1), Record({"body": "x"}, "f.jsonl", 2)]
    with pytest.raises(DataError, match=r"f.jsonl:2: missing column 'text' \(columns: body\)"):
        require_text(records, "text")
    with pytest.raises(DataError, match=r"f.jsonl:7: empty text"):
        require_text([Record({"text": "  "}, "f.jsonl", 7)], "text")


def test_label_checks():
    recs = [Record({"text": "a", "label": "x"}, "t", 1), Record({"text": "b", "label": 3}, "t", 2)]
    with pytest.raises(DataError, match="label column mixes types"):
        label_set(recs, "label")
    with pytest.raises(DataError, match="only one label"):
        label_set([Record({"text": "a", "label": "x"}, "t", 1)], "label")
    labels, multi = label_set([Record({"text": "a", "label": ["x", "y"]}, "t", 1),
                               Record({"text": "b", "label": ["z"]}, "t", 2)], "label")
    assert labels == ["x", "y", "z"] and multi


def test_label_unseen_in_train_is_an_error(minilm_tokenizer):
    task = ClassificationTask(minilm_tokenizer, ["neg", "pos"], "text", "label", 32)
    with pytest.raises(DataError, match=r"test.jsonl:4: label 'meh' in test never occurs in train"):
        task.encode([Record({"text": "x", "label": "meh"}, "test.jsonl", 4)], "test")


def _records(n: int) -> list[Record]:
    return [Record({"text": f"t{i}", "label": "abc"[i % 3], "g": i // 4}, "f", i + 1) for i in range(n)]


def test_fraction_split_is_stratified_seeded_and_disjoint():
    records = _records(300)
    kept, taken = carve(records, 0.1, "label", None, seed=3)
    assert len(taken) == 30 and Counter(r.fields["label"] for r in taken) == {"a": 10, "b": 10, "c": 10}
    assert not {id(r) for r in kept} & {id(r) for r in taken}
    again = carve(records, 0.1, "label", None, seed=3)[1]
    assert [r.line for r in again] == [r.line for r in taken]
    assert [r.line for r in carve(records, 0.1, "label", None, seed=4)[1]] != [r.line for r in taken]


def test_group_split_never_straddles():
    kept, taken = carve(_records(200), 0.2, "label", "g", seed=0)
    assert {r.fields["g"] for r in kept}.isdisjoint({r.fields["g"] for r in taken})
    assert 36 <= len(taken) <= 44


def test_load_splits_from_files_and_fractions(tmp_path):
    from conftest import toy_rows, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(100))
    test = write_jsonl(tmp_path / "test.jsonl", toy_rows(10, 5))
    splits = load_splits(str(train), 0.2, str(test), "label", None, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "validation": 20, "test": 10}


def test_kfold_is_disjoint_complete_and_stratified():
    records = _records(90)
    folds = kfold(records, 5, "label", seed=0)
    held = [i for _, fold in folds for i in fold]
    assert sorted(held) == list(range(90))
    for train_idx, fold in folds:
        assert set(train_idx).isdisjoint(fold)
        assert Counter(records[i].fields["label"] for i in fold) == {"a": 6, "b": 6, "c": 6}


# ---------------------------------------------------------------- issue 13: data files and labels

def test_limit_applies_before_the_splits_are_carved(tmp_path):
    """data.limit = the first N records read: limit 40 with validation 0.1 is 36 + 4, not 40 + 120."""
    from conftest import toy_rows, write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(1200))
    splits = load_splits(str(train), 0.1, None, "label", None, seed=0, limit=40)
    assert {k: len(v) for k, v in splits.items()} == {"train": 36, "validation": 4}
    assert max(r.line for s in splits.values() for r in s) == 40  # only the first 40 lines were used


@pytest.mark.parametrize("n, labels, fraction", [(1, 1, 0.1), (2, 2, 0.2), (3, 3, 0.2), (1, 0, 0.1)])
def test_an_empty_fraction_split_is_one_plain_error(tmp_path, n, labels, fraction):
    """Too few records for a fraction: the file, the sizes and the fix, never an IndexError later."""
    rows = [{"text": f"t{i}", "label": f"c{i}"} if labels else {"text": f"t{i}"} for i in range(n)]
    path = tmp_path / "few.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as info:
        load_splits(str(path), fraction, None, "label" if labels else None, None, seed=0)
    message = str(info.value)
    assert f"few.jsonl: data.validation={fraction} of {n} record(s) gives an empty validation split" in message
    assert "data.validation to a file" in message
    if n > 1:
        assert f"{n} of {n} classes have a single example" in message


def test_a_fraction_that_rounds_to_zero_still_takes_one_per_class(tmp_path):
    records = [Record({"text": f"t{i}", "label": "ab"[i % 2]}, "f", i + 1) for i in range(12)]
    kept, taken = carve(records, 0.01, "label", None, seed=0)  # 0.12 records: one of each class anyway
    assert len(taken) == 2 and {r.fields["label"] for r in taken} == {"a", "b"} and len(kept) == 10


def test_single_example_classes_stay_in_train():
    """Carved off, a class's only example would be a label train never saw (and the error blamed the user)."""
    records = _records(30) + [Record({"text": f"rare {i}", "label": f"rare{i}"}, "f", 100 + i) for i in range(20)]
    kept, taken = carve(records, 0.2, "label", None, seed=0)
    assert {r.fields["label"] for r in taken} == {"a", "b", "c"} and len(taken) == 6
    assert {f"rare{i}" for i in range(20)} <= {r.fields["label"] for r in kept}
    multi = [Record({"text": f"t{i}", "label": [f"x{i}", "y"]}, "f", i + 1) for i in range(20)]
    assert len(carve(multi, 0.2, "label", None, seed=0)[1]) == 4  # combinations are not classes: carved


def test_five_hundred_one_example_classes_say_so_in_a_short_line(tmp_path):
    path = tmp_path / "intents.jsonl"
    path.write_text("".join(json.dumps({"text": f"ask {i}", "label": f"intent-{i:03d}"}) + "\n" for i in range(500)))
    with pytest.raises(DataError) as info:
        load_splits(str(path), 0.1, None, "label", None, seed=0)
    message = str(info.value)
    assert "500 of 500 classes have a single example" in message and "at least 2 examples" in message
    assert "data.validation to a file" in message and len(message) < 400 and message.count("intent-") <= 4


def _fifo_feed(tmp_path, name, total):
    """A named pipe fed `total` bytes without a newline; returns (path, thread, bytes written)."""
    import os
    import threading

    path = tmp_path / name
    os.mkfifo(path)
    written = [0]

    def feed():
        try:
            with open(path, "wb") as f:
                chunk = b"x" * 65536
                while written[0] < total:
                    f.write(chunk)
                    written[0] += len(chunk)
        except BrokenPipeError:  # the reader stopped: what we want
            pass

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return path, thread, written


@pytest.mark.parametrize("name", ["stream.jsonl", "stream.csv"])
def test_a_line_without_end_is_refused_after_max_line_bytes(tmp_path, name):
    """Reading stops at MAX_LINE_BYTES + 1: a 5 GB file without newlines is never read whole."""
    from tuneforge.data import records as data

    path, thread, written = _fifo_feed(tmp_path, name, 40 * data.MAX_LINE_BYTES)
    with pytest.raises(DataError, match=r"stream\.\w+:1: line is over 1,000,000 bytes long"):
        read_records(path)
    thread.join(timeout=30)
    assert written[0] < 3 * data.MAX_LINE_BYTES  # the writer was cut off soon after the limit


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "hf"])
def test_total_size_is_bounded_and_limit_reads_less(tmp_path, monkeypatch, kind):
    from datasets import Dataset

    from tuneforge.data import records as data

    rows = [{"text": f"record number {i} " + "w" * 80, "label": "ab"[i % 2]} for i in range(1000)]
    path = tmp_path / f"d.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "csv":
        path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    elif kind == "parquet":
        _parquet(path, rows)
    else:
        Dataset.from_list(rows).save_to_disk(str(path))
    monkeypatch.setattr(data, "MAX_DATA_BYTES", 20_000)
    with pytest.raises(DataError, match="more than 20,000 bytes of data; tuneforge holds the data in memory"):
        read_records(path)
    first = read_records(path, limit=50)
    assert [r.fields["text"] for r in first] == [r["text"] for r in rows[:50]]
    assert [r.line for r in first][-1] == (51 if kind == "csv" else 50)


def test_csv_unclosed_quote_is_bounded_and_named(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('text,label\ngood,pos\n"bad kettle,neg\n' + "more words here,neg\n" * 60_000)
    with pytest.raises(DataError, match=r"q\.csv:3: a field over 1,000,000 characters starts in this row, "
                                        r"most likely a quote that is never closed"):
        read_records(path)


def test_csv_duplicate_header_and_utf8_errors(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label, text\nhello,pos,bye\n")
    with pytest.raises(DataError, match=r"d\.csv:1: duplicate column name 'text' in the header"):
        read_records(path)
    (tmp_path / "ok.csv").write_text("text,label,,\nhello,pos,,\n")  # blank headers (Excel's trailing commas)
    assert read_records(tmp_path / "ok.csv")[0].fields["label"] == "pos"
    (tmp_path / "b.csv").write_bytes("text,label\nok,pos\nnaïve caf\xe9,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"b\.csv:3: invalid UTF-8 byte 0xef at column 3"):
        read_records(tmp_path / "b.csv")
    (tmp_path / "mac.csv").write_bytes(b"text,label\rgood,pos\rbad,neg\r")  # old Mac line ends still read
    assert [(r.fields["text"], r.line) for r in read_records(tmp_path / "mac.csv")] == [("good", 2), ("bad", 3)]


def test_symlinks_missing_looping_and_dangling(tmp_path):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="loop.jsonl: symlink loop"):
        read_records(loop)
    dangling = tmp_path / "d.jsonl"
    dangling.symlink_to(tmp_path / "moved.jsonl")
    with pytest.raises(DataError, match="d.jsonl: symlink to a missing file"):
        read_records(dangling)
    with pytest.raises(DataError, match=r"none.jsonl: file not found \(check the path\)$"):
        read_records(tmp_path / "none.jsonl")


@pytest.mark.parametrize("text", ["\u200b", "\ufeff\u200b", " \u200c\u200d ", "\u2060\u00ad", "\u3164", "\x00"])
def test_invisible_text_is_empty_text(text):
    with pytest.raises(DataError, match=r"f.jsonl:3: empty text in column 'text' \(only invisible characters\)"):
        require_text([Record({"text": "fine"}, "f.jsonl", 2), Record({"text": text}, "f.jsonl", 3)], "text")
    require_text([Record({"text": "a\u200bb"}, "f.jsonl", 1)], "text")  # visible text around one is fine


def _label(value):
    return [Record({"text": "a", "label": "x" if not isinstance(value, list) else ["x"]}, "t", 1),
            Record({"text": "b", "label": value}, "t", 2)]


@pytest.mark.parametrize("value, message", [
    (None, r"t:2: null label in column 'label'"),
    ("", r"t:2: empty label in column 'label'"),
    ("\u200b ", r"t:2: empty label in column 'label'"),
    (["y", None], r"t:2: null label inside the label list"),
    (["y", ["z"]], r"t:2: label \['z'\] inside the label list is a list"),
    (["y", {"z": 1}], r"t:2: label \{'z': 1\} inside the label list is a dict"),
    (["y", 0.5], r"t:2: label 0.5 inside the label list is not a whole number"),
    (["y", 2], r"t:2: label list mixes integer and text"),
    ({"a": 1}, r"t:2: label \{'a': 1\} in column 'label' is a dict"),
])
def test_labels_the_task_cannot_learn(value, message):
    with pytest.raises(DataError, match=message):
        label_set(_label(value), "label")


def test_label_kinds_floats_and_bools():
    def recs(*values):
        return [Record({"text": f"t{i}", "label": v}, "t", i + 1) for i, v in enumerate(values)]

    assert label_set(recs(1.0, 0.0, 2), "label") == (["0", "1", "2"], False)  # pandas' 1.0 is the class 1
    assert label_set(recs(True, False), "label") == (["false", "true"], False)  # as JSON and a CSV cell spell them
    with pytest.raises(DataError, match=r"t:2: label column mixes types: boolean at line 1, integer here"):
        label_set(recs(True, 1), "label")  # not one class by accident (True == 1 in Python)
    with pytest.raises(DataError, match=r"t:1: label 0.5 in column 'label' is not a whole number"):
        label_set(recs(0.5, 1), "label")
    with pytest.raises(DataError, match="not a whole number"):
        label_set(recs(float("inf"), 1), "label")
    assert label_set(recs(["a"], [], ["b", "a"]), "label") == (["a", "b"], True)  # [] = none apply


def test_label_errors_echo_bounded_values(minilm_tokenizer):
    task = ClassificationTask(minilm_tokenizer, [f"class-{i}" for i in range(500)], "text", "label", 32)
    with pytest.raises(DataError) as info:
        task.encode([Record({"text": "x", "label": "z" * 1_000_000}, "test.jsonl", 4)], "test")
    message = str(info.value)
    assert "test.jsonl:4: label 'zzz" in message and "…" in message and "(500 in all)" in message
    assert len(message) < 600
    with pytest.raises(DataError, match=r"test.jsonl:5: null label"):
        task.encode([Record({"text": "x", "label": None}, "test.jsonl", 5)], "test")
    wide = {f"column-{i}-" + "k" * 100: 1 for i in range(1000)}
    with pytest.raises(DataError) as info:
        label_set([Record(wide, "t", 1)], "label")
    assert "missing label column 'label'" in str(info.value) and len(str(info.value)) < 800


def test_compare_takes_data_limit_like_train(tmp_path):
    """compare's training subset and shared validation split come from the first data.limit records, as in
    train (it carved validation off all 1,200 and trained on 40)."""
    from conftest import toy_rows, write_jsonl

    from tuneforge.recipes.compare import write_subsets
    from tuneforge.config import load_config

    train = write_jsonl(tmp_path / "train.jsonl", toy_rows(1200))
    cfg = load_config(None, base={"name": "x", "task": "classification", "model": "minilm",
                                  "data": {"train": str(train), "validation": 0.1, "limit": 40}})
    plan = write_subsets(cfg, [], tmp_path / "plan")
    assert sorted(plan.train) == [36]
    assert len(Path(plan.validation).read_text().splitlines()) == 4
