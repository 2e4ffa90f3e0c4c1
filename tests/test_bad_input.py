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
