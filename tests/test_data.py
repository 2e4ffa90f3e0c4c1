"""Readers (JSONL, CSV, Parquet, HF-on-disk), splits, and errors that name file:line."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tuneforge.classification import ClassificationTask, label_set
from tuneforge.data import Record, read_records, require_text
from tuneforge.errors import DataError
from tuneforge.splits import carve, kfold, load_splits

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
