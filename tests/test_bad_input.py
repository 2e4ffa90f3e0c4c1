"""The bad-input matrix: every user mistake in config, data or environment ends with exit code 2, one
`error:` line naming the file:line or key and the fix, no traceback, and nothing half-written or overwritten.

Each case runs `tuneforge.cli.main` in-process (same code path as the console script; an uncaught exception
fails the test). A sample of the cases also runs through the real CLI in subprocesses, which proves the
process-level contract (exit status, stderr, no traceback) without paying a torch import per case.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import broken_models as bm
import pytest
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_config, write_jsonl

from tuneforge import cli


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process CLI runs set torch's thread count from the config; give other tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bad-input") / "tiny-bert")


@dataclass
class Case:
    """`build(tmp, model) -> argv` writes the inputs; `expect` must all occur in the single error line."""

    build: Callable[[Path, Path], list[str]]
    expect: list[str]
    untouched: Callable[[Path], list[Path]] = field(default=lambda tmp: [])  # files that must not change


def good_cfg(tmp: Path, model: Path, **train: Any) -> dict[str, Any]:
    data = tmp / "train.jsonl"
    if not data.exists():
        write_jsonl(data, sentiment_rows(30))
    return tiny_train_config(model, data, tmp / "runs", name="bad", **train)


def with_config(mutate: Callable[[dict[str, Any], Path], None], *extra: str) -> Callable[[Path, Path], list[str]]:
    """A case from a valid config changed by `mutate(cfg, tmp)`."""

    def build(tmp: Path, model: Path) -> list[str]:
        cfg = good_cfg(tmp, model)
        mutate(cfg, tmp)
        return ["train", str(write_config(tmp / "c.yaml", **cfg)), *extra, "--quiet"]

    return build


def config_text(text: str | bytes) -> Callable[[Path, Path], list[str]]:
    def build(tmp: Path, model: Path) -> list[str]:
        path = tmp / "c.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["train", str(path), "--quiet"]

    return build


def data_file(name: str, content: str | bytes, **data: Any) -> Callable[[Path, Path], list[str]]:
    """Train on a file `name` holding `content` (validation split off it unless `data` says otherwise)."""

    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        cfg["data"].update({"train": str(path), **data})

    return with_config(mutate)


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD = sentiment_rows(30)


def set_key(path: str, value: Any) -> Callable[[dict[str, Any], Path], None]:
    def mutate(cfg: dict[str, Any], tmp: Path) -> None:
        node = cfg
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return mutate


def existing_run(tmp: Path, model: Path, finished: bool) -> list[str]:
    run = tmp / "runs" / "bad"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    if finished:
        (run / "eval.json").write_text("{}\n")
    cfg = good_cfg(tmp, model)
    return ["train", str(write_config(tmp / "c.yaml", **cfg)), "--quiet"] + (["--resume"] if finished else [])


def mixed_types(cfg: dict[str, Any], tmp: Path) -> None:
    rows = [dict(r) for r in GOOD]
    rows[7]["label"] = 3
    write_jsonl(tmp / "mixed.jsonl", rows)
    cfg["data"]["train"] = str(tmp / "mixed.jsonl")


def unknown_test_label(cfg: dict[str, Any], tmp: Path) -> None:
    write_jsonl(tmp / "test.jsonl", [{"text": "fine kettle", "label": "positive"},
                                     {"text": "odd kettle", "label": "sarcastic"}])
    cfg["data"]["test"] = str(tmp / "test.jsonl")


def list_label_in_test(cfg: dict[str, Any], tmp: Path) -> None:
    write_jsonl(tmp / "test.jsonl", [{"text": "fine kettle", "label": ["positive", "neutral"]}])
    cfg["data"]["test"] = str(tmp / "test.jsonl")


def pickle_model(cfg: dict[str, Any], tmp: Path) -> None:
    cfg["model"] = str(make_tiny_bert(tmp / "pickled", safe=False))


def output_dir_is_file(cfg: dict[str, Any], tmp: Path) -> None:
    (tmp / "afile").write_text("x")
    cfg["output_dir"] = str(tmp / "afile" / "runs")


def unwritable_output(cfg: dict[str, Any], tmp: Path) -> None:
    if os.geteuid() == 0:  # root ignores permission bits; sysfs refuses new directories even to root
        cfg["output_dir"] = "/sys/kernel"
    else:
        (tmp / "ro").mkdir()
        os.chmod(tmp / "ro", 0o500)
        cfg["output_dir"] = str(tmp / "ro")


def symlink_loop(cfg: dict[str, Any], tmp: Path) -> None:
    (tmp / "loop.jsonl").symlink_to(tmp / "loop.jsonl")
    cfg["data"]["train"] = str(tmp / "loop.jsonl")


def huge_test_label(cfg: dict[str, Any], tmp: Path) -> None:
    write_jsonl(tmp / "test.jsonl", [{"text": "odd kettle", "label": "q" * 500_000}])
    cfg["data"]["test"] = str(tmp / "test.jsonl")


def trained_run(model: Path) -> Path:
    """One finished run per model directory (trained once, beside it), for eval/predict cases."""
    run = model.parent / "trained" / "runs" / "done"
    if not (run / "eval.json").exists():
        work = model.parent / "trained"
        cfg = tiny_train_config(model, write_jsonl(work / "train.jsonl", GOOD), work / "runs", name="done")
        assert cli.main(["train", str(write_config(work / "c.yaml", **cfg)), "--quiet"]) == 0
    return run


def csv_rows(rows: list[dict[str, Any]]) -> str:
    return "".join(f"{r['text']},{r['label']}\n" for r in rows)


def singleton_rows(n: int) -> list[dict[str, Any]]:
    return [{"text": f"please route ticket {i}", "label": f"intent-{i:03d}"} for i in range(n)]


def good_config_plus(text: str) -> Callable[[Path, Path], list[str]]:
    """A valid config file with `text` appended."""

    def build(tmp: Path, model: Path) -> list[str]:
        path = write_config(tmp / "c.yaml", **good_cfg(tmp, model))
        path.write_text(path.read_text() + text)
        return ["train", str(path), "--quiet"]

    return build


# Nine levels of ten aliases: 10^9 strings once expanded, 400 bytes of text.
BILLION_LAUGHS = 'l0: &l0 "lol"\n' + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
FLOW_LAUGHS = "[&a [q, q, q, q, q, q, q, q, q, q], &b [" + ", ".join(["*a"] * 10) + "], &c [" + ", ".join(["*b"] * 10) \
    + "], " + ", ".join(["[" + ", ".join(["*c"] * 10) + "]"] * 5) + "]"


CASES: dict[str, Case] = {
    # ---- config file
    "yaml-malformed": Case(config_text("name: x\ntrain:\n  lr: 1\n   epochs: 2\n"), ["c.yaml:4", "malformed YAML"]),
    "yaml-not-mapping": Case(config_text("- a\n- b\n"), ["expected a mapping"]),
    "yaml-empty": Case(config_text("\n# nothing\n"), ["config is empty"]),
    "yaml-not-utf8": Case(config_text(b"name: caf\xe9\n"), ["not UTF-8"]),
    "config-missing": Case(lambda tmp, m: ["train", str(tmp / "nope.yaml")], ["nope.yaml not found"]),
    "config-is-dir": Case(lambda tmp, m: ["train", str(tmp)], ["is a directory"]),
    "unknown-key": Case(with_config(set_key("train.epocs", 2)), ["unknown key `train.epocs`", "`train.epochs`"]),
    "wrong-type-number": Case(with_config(set_key("train.lr", "fast")), ["`train.lr`", "is not a number"]),
    "wrong-type-int": Case(with_config(set_key("train.batch_size", 2.5)), ["`train.batch_size`", "not an integer"]),
    "wrong-type-section": Case(with_config(set_key("train", 5)), ["`train` must be a mapping"]),
    "out-of-range": Case(with_config(set_key("train.batch_size", 0)), ["`train.batch_size`", "below the minimum 1"]),
    "not-finite": Case(with_config(set_key("train.lr", float("nan"))), ["`train.lr`", "finite"]),
    "bad-choice": Case(with_config(set_key("method.name", "magic")), ["`method.name`", "one of"]),
    "bad-override": Case(with_config(lambda c, t: None, "train.lr"), ["override 'train.lr'", "key=value"]),
    "fractions-too-big": Case(with_config(lambda c, t: c["data"].update(validation=0.5, test=0.45)),
                              ["`data.validation` + `data.test`"]),
    "model-missing": Case(with_config(lambda c, t: c.update(model=str(t / "no-model"))), ["no-model", "neither"]),
    "model-pickle": Case(with_config(pickle_model), ["pytorch_model.bin is a pickle", "allow_pickle"]),
    # ---- data files
    "data-missing": Case(with_config(lambda c, t: c["data"].update(train=str(t / "gone.jsonl"))),
                         ["gone.jsonl: file not found"]),
    "data-is-dir": Case(with_config(lambda c, t: c["data"].update(train=str(t))), ["is a directory"]),
    "data-empty": Case(data_file("e.jsonl", ""), ["e.jsonl", "empty"]),
    "data-unknown-type": Case(data_file("d.txt", "hello\n"), ["d.txt", "unknown file type"]),
    "json-malformed": Case(data_file("m.jsonl", jsonl(GOOD[:2]) + '{"text": "a", "label": \n'),
                           ["m.jsonl:3", "malformed JSON"]),
    "json-not-object": Case(data_file("a.jsonl", jsonl(GOOD[:3]) + "[1, 2]\n"), ["a.jsonl:4", "expected a JSON object"]),
    "json-too-deep": Case(data_file("deep.jsonl", jsonl(GOOD[:1]) + '{"text": ' + "[" * 100000 + "]" * 100000 + "}\n"),
                          ["deep.jsonl:2", "nested"]),
    "csv-ragged": Case(data_file("r.csv", "text,label\ngood kettle,positive\nbad,negative\nx,neutral,extra\n"),
                       ["r.csv:4", "3 fields", "header has 2"]),
    "missing-text-column": Case(data_file("t.jsonl", jsonl([{"body": r["text"], "label": r["label"]} for r in GOOD])),
                                ["t.jsonl:1", "missing column 'text'", "data.text"]),
    "missing-label-column": Case(data_file("l.jsonl", jsonl([{"text": r["text"]} for r in GOOD])),
                                 ["l.jsonl:", "missing label column 'label'", "data.label"]),
    "empty-text": Case(data_file("x.jsonl", jsonl(GOOD[:5] + [{"text": "  ", "label": "positive"}] + GOOD[5:])),
                       ["x.jsonl:6", "empty text"]),
    "non-utf8": Case(data_file("b.jsonl", jsonl(GOOD[:4]).encode() + b'{"text": "caf\xe9", "label": "neutral"}\n'),
                     ["b.jsonl:5", "invalid UTF-8 byte 0xe9", "UTF-8"]),
    "huge-line": Case(data_file("h.jsonl", jsonl(GOOD[:2]) + json.dumps({"text": "a" * 1_100_000, "label": "x"}) + "\n"),
                      ["h.jsonl:3", "bytes long"]),
    "unknown-label": Case(with_config(unknown_test_label), ["test.jsonl:2", "'sarcastic'", "never occurs in train"]),
    "mixed-label-types": Case(with_config(mixed_types), ["mixed.jsonl:8", "mixes types"]),
    "one-label-only": Case(data_file("o.jsonl", jsonl([{**r, "label": "positive"} for r in GOOD])), ["only one label"]),
    "dict-label": Case(data_file("dl.jsonl", jsonl(GOOD[:3] + [{"text": "x y", "label": {"a": 1}}] + GOOD[3:])),
                       ["dl.jsonl:4", "label"]),
    "list-label-in-single-label-test": Case(with_config(list_label_in_test), ["test.jsonl:1", "list"]),
    # ---- run directory and environment
    "duplicate-run-name": Case(lambda tmp, m: existing_run(tmp, m, finished=False), ["already exists", "--overwrite"],
                               untouched=lambda tmp: [tmp / "runs" / "bad" / "metrics.jsonl"]),
    "resume-finished-run": Case(lambda tmp, m: existing_run(tmp, m, finished=True), ["already finished", "--overwrite"],
                                untouched=lambda tmp: [tmp / "runs" / "bad" / "metrics.jsonl", tmp / "runs" / "bad" / "eval.json"]),
    "output-dir-is-file": Case(with_config(output_dir_is_file), ["cannot create", "output_dir"]),
    "unwritable-output-dir": Case(with_config(unwritable_output), ["output_dir", "writable"]),
    # ---- run directory safety (issue 13)
    "overwrite-not-a-run": Case(lambda tmp, m: thesis_folder(tmp, m), ["is not a tuneforge run directory",
                                                                       "'thesis.tex'", "name=NEW"],
                                untouched=lambda tmp: files_under(tmp / "home" / "thesis")),
    "overwrite-run-holding-its-model": Case(lambda tmp, m: run_holding_model(tmp, m),
                                            ["`model`", "lies inside", "--overwrite would delete"],
                                            untouched=lambda tmp: files_under(tmp / "home" / "prev")),
    "overwrite-finished-run-late-error": Case(lambda tmp, m: overwrite_with_bad_targets(tmp, m),
                                              ["`method.targets`", "nonexistent_proj"],
                                              untouched=lambda tmp: files_under(tmp / "home" / "bad")),
    "early-stopping-metric-unknown": Case(with_config(set_key("train.early_stopping.metric", "val_nonsense")),
                                          ["`train.early_stopping.metric`", "'val_nonsense'", "val_f1_macro"]),
    "forgetting-reference-missing": Case(with_config(lambda c, t: c["forgetting"].update(
        reference=str(t / "nonexistent.jsonl"))), ["`forgetting.reference`", "nonexistent.jsonl", "file not found"]),
    "lora-target-missing": Case(with_config(lambda c, t: c["method"].update(name="lora", targets=["nonexistent_proj"])),
                                ["`method.targets`", "nonexistent_proj"]),
    "resume-method-changed": Case(lambda tmp, m: resume_changed(tmp, m, "method.r=16"),
                                  ["--resume", "`method.r`", "8 → 16", "--overwrite"],
                                  untouched=lambda tmp: files_under(tmp / "home" / "bad")),
    "resume-data-changed": Case(lambda tmp, m: resume_changed(tmp, m, change_data=True),
                                ["--resume", "`data.train`", "train.jsonl", "restore that file", "--overwrite"],
                                untouched=lambda tmp: files_under(tmp / "home" / "bad")),
    "predict-prompt-on-classifier": Case(lambda tmp, m: ["predict", str(fake_run(tmp, m, "classification")),
                                                         "--prompt", "hello"],
                                         ["--prompt is for instruction runs", "--text"]),
    "predict-text-on-instruction-run": Case(lambda tmp, m: ["predict", str(fake_run(tmp, m, "instruction")),
                                                            "--text", "hello"],
                                            ["--text is for classification runs", "--prompt"]),
    "eval-other-columns": Case(lambda tmp, m: eval_other_columns(tmp, m),
                               ["other.jsonl:1", "no column 'text'", "rename that column in"]),
    # ---- data files and labels (issue 13)
    "two-records": Case(data_file("two.jsonl", jsonl(GOOD[:2])),
                        ["two.jsonl", "data.validation=0.2 of 2 record(s) gives an empty validation split",
                         "data.validation to a file"]),
    "null-label": Case(data_file("nl.jsonl", jsonl(GOOD[:3] + [{"text": "fine kettle", "label": None}] + GOOD[3:])),
                       ["nl.jsonl:4", "null label in column 'label'"]),
    "empty-label-csv": Case(data_file("el.csv", "text,label\n" + csv_rows(GOOD[:4]) + "fine kettle,\n"
                                      + csv_rows(GOOD[4:])),
                            ["el.csv:6", "empty label in column 'label'"]),
    "one-example-classes": Case(data_file("intents.jsonl", jsonl(singleton_rows(500)), validation=0.1),
                                ["intents.jsonl", "500 of 500 classes have a single example",
                                 "'intent-000', 'intent-001', 'intent-002', …", "at least 2 examples",
                                 "data.validation to a file"]),
    "symlink-loop": Case(with_config(symlink_loop), ["loop.jsonl: symlink loop"]),
    "zero-width-text": Case(data_file("zw.jsonl", jsonl(GOOD[:5] + [{"text": "\u200b\ufeff\u200c\u200d",
                                                                    "label": "positive"}] + GOOD[5:])),
                            ["zw.jsonl:6", "empty text"]),
    "csv-duplicate-header": Case(data_file("dh.csv", "text,label,text\n" + "".join(f"{r['text']},{r['label']},x\n"
                                                                                   for r in GOOD)),
                                 ["dh.csv:1", "duplicate column name 'text'"]),
    "predict-data-missing": Case(lambda tmp, m: ["predict", str(trained_run(m)), "--data", str(tmp / "gone.jsonl")],
                                 ["gone.jsonl: file not found (check the path)"]),
    "eval-data-missing": Case(lambda tmp, m: ["eval", str(trained_run(m)), "--data", str(tmp / "gone.jsonl")],
                              ["gone.jsonl: file not found (check the path)"]),
    "fractional-label": Case(data_file("fl.jsonl", jsonl([{**r, "label": i % 2 + 0.5} for i, r in enumerate(GOOD)])),
                             ["fl.jsonl:1", "label 0.5", "not a whole number"]),
    "nested-list-label": Case(data_file("nest.jsonl", jsonl([{**r, "label": [r["label"]]} for r in GOOD[:3]]
                                                            + [{"text": "odd", "label": [["positive"]]}])),
                              ["nest.jsonl:4", "inside the label list is a list"]),
    "dict-in-label-list": Case(data_file("dil.jsonl", jsonl([{**r, "label": [r["label"]]} for r in GOOD[:3]]
                                                            + [{"text": "odd", "label": [{"name": "x"}]}])),
                               ["dil.jsonl:4", "inside the label list is a dict"]),
    "bool-and-int-labels": Case(data_file("bi.jsonl", jsonl([{**r, "label": i % 2 == 0} for i, r in enumerate(GOOD)]
                                                            + [{"text": "odd kettle", "label": 1}])),
                                ["bi.jsonl:31", "mixes types: boolean", "integer here"]),
    "huge-label-echoed-short": Case(with_config(huge_test_label),
                                    ["test.jsonl:1", "label 'qqq", "…", "never occurs"]),
    # ---- config file (issue 13)
    "epochs-zero": Case(with_config(set_key("train.epochs", 0)), ["`train.epochs` = 0 trains nothing", "train.max_steps"]),
    "validation-over-one": Case(with_config(set_key("data.validation", 1.5)), ["`data.validation` = 1.5", "fraction"]),
    "text-is-label": Case(with_config(set_key("data.text", "label")), ["`data.text` and `data.label`", "'label'"]),
    "yaml-duplicate-key": Case(good_config_plus("name: other\n"), ["c.yaml:", "duplicate key 'name'", "keep one"]),
    "yaml-too-big": Case(config_text("name: x\n" + "#" * (1 << 20) + "\n"), ["c.yaml", "larger than 1 MiB"]),
    "yaml-billion-laughs": Case(good_config_plus(BILLION_LAUGHS), ["c.yaml:", "values once aliases are expanded"]),
    "yaml-too-deep": Case(good_config_plus("notes: " + "[" * 5000 + "]" * 5000 + "\n"), ["c.yaml:", "nested deeper"]),
    "yaml-huge-number": Case(config_text("name: x\ntrain: {seed: " + "9" * 5000 + "}\n"), ["c.yaml:2", "5,000 digits"]),
    "long-value-echo": Case(with_config(set_key("train.lr", "fast" * 100_000)), ["`train.lr` = 'fastf", "...",
                                                                                 "is not a number"]),
    "too-many-targets": Case(with_config(set_key("method.targets", ["query"] * 5000)),
                             ["`method.targets`", "at most 4,096 entries (it has 5,000)"]),
    "override-billion-laughs": Case(with_config(lambda c, t: None, "method.targets=" + FLOW_LAUGHS),
                                    ["override `method.targets`", "values once aliases are expanded"]),
    # ---- broken model files (issue 13)
    "model-safetensors-truncated": Case(with_config(bm.broken_model(bm.truncated_safetensors)),
                                        ["model.safetensors", "not a readable safetensors file", "truncated"]),
    "model-safetensors-garbage-beside-bin": Case(with_config(bm.broken_model(bm.garbage_safetensors_beside_bin)),
                                                 ["model.safetensors", "not a readable safetensors file",
                                                  "pytorch_model.bin"]),
    "model-gguf-garbage": Case(with_config(bm.broken_model(bm.garbage_gguf)),
                               ["model.gguf", "cannot be loaded as a GGUF model", "GGUF magic"]),
    "model-gguf-header-junk": Case(with_config(bm.broken_model(bm.gguf_header_then_junk)),
                                   ["model.gguf", "cannot be loaded as a GGUF model", "copied or downloaded again"]),
    "model-pickle-refused": Case(with_config(bm.broken_model(bm.pickle_that_runs_code, allow_pickle=True)),
                                 ["pytorch_model.bin", "safe loader (weights_only=True) refused", "safetensors"]),
    "model-tokenizer-not-json": Case(with_config(bm.broken_model(bm.tokenizer_not_json)),
                                     ["tokenizer.json is not valid JSON", "copy or save the model"]),
    "model-without-vocabulary": Case(with_config(bm.broken_model(bm.without_vocabulary)),
                                     ["broken-model", "[UNK]", "no vocabulary file", "tokenizer.save_pretrained"]),
}


# ---------------------------------------------------------------- regression (issue 14)
RATED = [{"text": r["text"], "stars": i % 5 + 1} for i, r in enumerate(GOOD)]


def regression(mutate: Callable[[dict[str, Any], Path], None] | None = None,
               rows: str | None = None, name: str = "r.jsonl") -> Callable[[Path, Path], list[str]]:
    """A regression config (target column `stars`) training on `rows` (default RATED), changed by `mutate`."""

    def change(cfg: dict[str, Any], tmp: Path) -> None:
        (tmp / name).write_text(jsonl(RATED) if rows is None else rows, encoding="utf-8")
        cfg["task"] = "regression"
        cfg["data"].update(train=str(tmp / name), label="stars")
        if mutate:
            mutate(cfg, tmp)

    return with_config(change)


def rated_with(bad: Any, at: int = 3) -> str:
    """RATED with a record whose target is `bad` at line at + 1 (JSON writes NaN and Infinity bare)."""
    return jsonl(RATED[:at] + [{"text": "fine kettle, odd note", "stars": bad}] + RATED[at:])


def bad_regression_test_file(cfg: dict[str, Any], tmp: Path) -> None:
    write_jsonl(tmp / "test.jsonl", [{"text": "fine kettle", "stars": 4}, {"text": "odd kettle", "stars": "4 stars"}])
    cfg["data"]["test"] = str(tmp / "test.jsonl")


CASES.update({
    "regression-label-not-a-number": Case(regression(rows=rated_with("five")),
                                          ["r.jsonl:4", "label 'five' in column 'stars' is not a number",
                                           "task: classification"]),
    "regression-label-nan": Case(regression(rows=rated_with(float("nan"))),
                                 ["r.jsonl:4", "label nan in column 'stars' is not a finite number", "NaN"]),
    "regression-label-infinity": Case(regression(rows=rated_with(float("-inf"))),
                                      ["r.jsonl:4", "label -inf", "not a finite number"]),
    "regression-label-bool": Case(regression(rows=rated_with(True)),
                                  ["r.jsonl:4", "label True in column 'stars' is a boolean", "classification"]),
    "regression-label-list": Case(regression(rows=rated_with([4, 5])), ["r.jsonl:4", "is a list", "one number"]),
    "regression-csv-label-not-a-number": Case(regression(rows="text,stars\n" + "".join(
        f"{r['text']},{r['stars']}\n" for r in RATED[:5]) + "odd kettle,four\n" + "".join(
        f"{r['text']},{r['stars']}\n" for r in RATED[5:]), name="r.csv"), ["r.csv:7", "'four'", "not a number"]),
    "regression-constant-target": Case(regression(rows=jsonl([{**r, "stars": 3} for r in RATED])),
                                       ["r.jsonl", "every training target in column 'stars' is 3", "nothing to learn"]),
    "regression-test-label-bad": Case(regression(bad_regression_test_file),
                                      ["test.jsonl:2", "label '4 stars'", "not a number"]),
    "regression-label-smoothing": Case(regression(set_key("train.label_smoothing", 0.1)),
                                       ["`train.label_smoothing` = 0.1", "regression"]),
    "regression-replay": Case(regression(set_key("forgetting.replay", 0.25)),
                              ["`forgetting.replay` = 0.25", "forgetting.l2_to_base"]),
    "regression-early-stopping-accuracy": Case(regression(set_key("train.early_stopping.metric", "val_accuracy")),
                                               ["`train.early_stopping.metric`", "'val_accuracy'", "val_mae"]),
})


# ---------------------------------------------------------------- run directory safety (issue 13): case inputs

def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def thesis_folder(tmp: Path, model: Path) -> list[str]:
    """output_dir/name is a user's folder holding their thesis and the training data itself."""
    folder = tmp / "home" / "thesis"
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("\\section{Results}\n")
    write_jsonl(folder / "train.jsonl", GOOD)
    cfg = tiny_train_config(model, folder / "train.jsonl", tmp / "home", name="thesis")
    return ["train", str(write_config(tmp / "c.yaml", **cfg)), "--overwrite", "--quiet"]


def fake_finished_run(run: Path, config: str = "") -> Path:
    """What a finished run leaves at the top of its directory (contents are not read by these cases)."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(config or "name: x\n_provenance: {tuneforge: 0.1.0}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    (run / "data_audit.json").write_text("{}\n")
    (run / "eval.json").write_text("{}\n")
    return run


def run_holding_model(tmp: Path, model: Path) -> list[str]:
    """A run whose model/ the new config starts from: --overwrite would delete the model it loads."""
    import shutil

    run = fake_finished_run(tmp / "home" / "prev")
    shutil.copytree(model, run / "model")
    cfg = tiny_train_config(run / "model", tmp / "train.jsonl", tmp / "home", name="prev")
    write_jsonl(tmp / "train.jsonl", GOOD)
    return ["train", str(write_config(tmp / "c.yaml", **cfg)), "--overwrite", "--quiet"]


def overwrite_with_bad_targets(tmp: Path, model: Path) -> list[str]:
    """--overwrite of a finished run with a mistake found only once the model is loaded (method.targets)."""
    fake_finished_run(tmp / "home" / "bad")
    cfg = good_cfg(tmp, model)
    cfg.update(output_dir=str(tmp / "home"))
    cfg["method"].update(name="lora", targets=["nonexistent_proj"])
    return ["train", str(write_config(tmp / "c.yaml", **cfg)), "--overwrite", "--quiet"]


def resume_changed(tmp: Path, model: Path, *overrides: str, change_data: bool = False) -> list[str]:
    """An unfinished LoRA run (its config.yaml as tuneforge writes it), resumed with a change."""
    import hashlib

    from tuneforge.config import dump_yaml, load_config

    cfg = good_cfg(tmp, model)
    cfg.update(output_dir=str(tmp / "home"))
    cfg["method"].update(name="lora", r=8)
    path = write_config(tmp / "c.yaml", **cfg)
    digest = hashlib.sha256((tmp / "train.jsonl").read_bytes()).hexdigest()[:16]
    run = fake_finished_run(tmp / "home" / "bad", dump_yaml(load_config(path), {"tuneforge": "0.1.0",
                                                                                "data_sha256": {"train": digest}}))
    (run / "eval.json").unlink()
    if change_data:
        write_jsonl(tmp / "train.jsonl", GOOD + sentiment_rows(3, seed=9))
    return ["train", str(path), *overrides, "--resume", "--quiet"]


def fake_run(tmp: Path, model: Path, task: str) -> Path:
    """A finished run as far as predict/eval read it before loading a model: config.yaml and model/tuneforge.json."""
    from tuneforge.config import dump_yaml, load_config

    cfg = load_config(None, base={**good_cfg(tmp, model), "task": task})
    run = fake_finished_run(tmp / "fake" / "run", dump_yaml(cfg, {"tuneforge": "0.1.0"}))
    (run / "model").mkdir()
    (run / "model" / "tuneforge.json").write_text(json.dumps({"task": task, "method": "full", "labels": ["a", "b"]}))
    return run


def eval_other_columns(tmp: Path, model: Path) -> list[str]:
    write_jsonl(tmp / "other.jsonl", [{"body": r["text"], "label": r["label"]} for r in GOOD[:4]])
    return ["eval", str(fake_run(tmp, model, "classification")), "--data", str(tmp / "other.jsonl")]


def snapshot(paths: list[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and len(lines) == 1, err[-3000:]
    return errors[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    argv = case.build(tmp_path, model_dir)
    before = snapshot(case.untouched(tmp_path))
    capsys.readouterr()
    rc = cli.main(argv)
    line = error_line(capsys.readouterr().err)
    assert rc == 2
    for fragment in case.expect:
        assert fragment in line, line
    assert snapshot(list(before)) == before  # an existing run is never overwritten
    if name not in ("duplicate-run-name", "resume-finished-run"):
        assert not (tmp_path / "runs" / "bad").exists()  # nothing created for a run that never started


def test_matrix_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25


# ---------------------------------------------------------------- full disk during training

def _disk_full(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """safetensors' save raises ENOSPC (after writing a stub) from call number `after` + 1 on."""
    import safetensors.torch as st

    # Modules that bind `save_file` at import time must be imported before the patch, or they would keep
    # the fake for the rest of the session (and every later test would see a "full disk").
    import peft.utils.save_and_load  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    real, calls = st.save_file, {"n": 0}

    def save_file(tensors: Any, filename: str, metadata: Any = None) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(st, "save_file", save_file)


@pytest.mark.parametrize("where", ["checkpoint", "final-model"])
def test_disk_full_at_save(where: str, tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    train = {"epochs": 1, "checkpoint_every": 2} if where == "checkpoint" else {"epochs": 1}
    cfg = good_cfg(tmp_path, model_dir, **train)
    path = write_config(tmp_path / "c.yaml", **cfg)
    _disk_full(monkeypatch, after=2)  # checkpoint: step-2 (2 files) is written, step-4 fails
    if where == "final-model":
        import transformers.modeling_utils as mu

        def full(tensors: Any, filename: str, metadata: Any = None) -> None:
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", filename)

        monkeypatch.setattr(mu, "safe_save_file", full)
    capsys.readouterr()
    rc = cli.main(["train", str(path), "--quiet"])
    line = error_line(capsys.readouterr().err)
    assert rc == 2
    run = tmp_path / "runs" / "bad"
    if where == "checkpoint":
        assert "disk full while writing checkpoint step-4" in line and "step-2" in line and "--resume" in line
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"]
    else:
        assert "disk full while writing" in line and "model" in line and "--resume" in line
    assert not (run / "model").exists() and not (run / "eval.json").exists()
    assert not [p for p in run.rglob("*") if p.name.startswith((".tmp", ".model"))]  # no half-written leftovers


# ---------------------------------------------------------------- the same contract through real processes

# a config-level, a data-level and a model-file mistake; the last one imports torch and transformers and
# makes torch's unpickler warn, so it shows that no third-party warning reaches the user
SUBPROCESS_SAMPLE = ["yaml-malformed", "json-malformed", "model-pickle-refused"]


def test_real_cli_subprocesses(tmp_path: Path, model_dir: Path) -> None:
    procs = {}
    for name in SUBPROCESS_SAMPLE:
        tmp = tmp_path / name
        tmp.mkdir()
        argv = CASES[name].build(tmp, model_dir)
        warnings_on = {**os.environ, "PYTHONWARNINGS": "default"}  # DeprecationWarning included
        procs[name] = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", *argv], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=warnings_on)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 2, (name, err[-3000:])
        line = error_line(err)
        assert all(fragment in line for fragment in CASES[name].expect), (name, line)
    assert not list(tmp_path.rglob("PWNED"))  # the refused pickle never ran its code
