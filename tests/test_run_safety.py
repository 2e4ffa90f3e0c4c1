"""Never destroy what the user has (issue 13): --overwrite replaces only a tuneforge run and only after every
check that can fail has passed; a mistake found late leaves no run directory; a refused --resume writes
nothing; SIGTERM/Ctrl-C say what was saved and how to continue; predict/eval messages name the real fix.

A real finished LoRA run is trained once per module (in-process, a few seconds); tests work on copies of it.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_config, write_jsonl

from tuneforge import cli

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
TIMEOUT = 240


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process CLI runs set torch's thread count from the config; give other tests theirs back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished LoRA run (r=8, a checkpoint every 2 steps) and the config that made it."""
    root = tmp_path_factory.mktemp("run-safety")
    model = make_tiny_bert(root / "tiny-bert")
    data = write_jsonl(root / "train.jsonl", sentiment_rows(30))
    cfg = tiny_train_config(model, data, root / "runs", name="done", epochs=1, checkpoint_every=2)
    cfg["method"] = {"name": "lora", "r": 8}
    config = write_config(root / "c.yaml", **cfg)
    assert cli.main(["train", str(config), "--quiet"]) == 0
    return {"root": root, "model": model, "data": data, "cfg": cfg, "config": config, "run": root / "runs" / "done"}


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for directories): equal trees are byte-identical."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def copy_run(base: dict[str, Any], tmp: Path, finished: bool = True) -> tuple[Path, Path]:
    """A copy of the finished run under tmp/runs/NAME and a config that writes to it."""
    run = tmp / "runs" / "done"
    shutil.copytree(base["run"], run)
    if not finished:  # what a killed run looks like: checkpoints, no eval.json
        (run / "eval.json").unlink()
        shutil.rmtree(run / "model")
    cfg = {**base["cfg"], "output_dir": str(tmp / "runs")}
    return run, write_config(tmp / "c.yaml", **cfg)


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    return lines[0]


# ---------------------------------------------------------------- item 1: --overwrite only replaces a run

def test_overwrite_refuses_a_users_folder_and_leaves_it_byte_identical(tmp_path: Path, base: dict[str, Any],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "home" / "thesis"
    (folder / "figures").mkdir(parents=True)
    (folder / "thesis.tex").write_text("\\section{Results}\n")
    (folder / "figures" / "curve.pdf").write_bytes(b"%PDF-1.4 ...")
    write_jsonl(folder / "train.jsonl", sentiment_rows(30))
    cfg = tiny_train_config(base["model"], folder / "train.jsonl", tmp_path / "home", name="thesis")
    before = tree(folder)
    line = one_error(capsys, ["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--overwrite", "--quiet"])
    assert str(folder) in line and "not a tuneforge run directory" in line
    assert tree(folder) == before


def test_overwrite_refuses_a_run_holding_a_file_the_config_reads(tmp_path: Path, base: dict[str, Any],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The data sits in a folder tuneforge writes (export/): the directory looks like a run, yet deleting it
    would delete the training data."""
    run, _ = copy_run(base, tmp_path)
    (run / "export").mkdir()
    data = write_jsonl(run / "export" / "train.jsonl", sentiment_rows(30))
    cfg = {**base["cfg"], "output_dir": str(tmp_path / "runs"), "data": {**base["cfg"]["data"], "train": str(data)}}
    before = tree(run)
    line = one_error(capsys, ["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--overwrite", "--quiet"])
    assert "`data.train`" in line and "lies inside" in line
    assert tree(run) == before


def test_foreign_config_yaml_is_not_a_run_marker(tmp_path: Path, base: dict[str, Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Only tuneforge's file names, and a config.yaml that is the user's own, is still not a run."""
    folder = tmp_path / "runs" / "done"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("my: own settings\n")
    (folder / "metrics.jsonl").write_text("{}\n")
    config = write_config(tmp_path / "c.yaml", **{**base["cfg"], "output_dir": str(tmp_path / "runs")})
    before = tree(folder)
    line = one_error(capsys, ["train", str(config), "--overwrite", "--quiet"])
    assert "config.yaml was not written by tuneforge" in line
    assert tree(folder) == before


def test_overwrite_replaces_a_real_run_and_leaves_nothing_aside(tmp_path: Path, base: dict[str, Any]) -> None:
    run, config = copy_run(base, tmp_path)
    old_eval = (run / "eval.json").read_bytes()
    assert cli.main(["train", str(config), "train.seed=1", "--overwrite", "--quiet"]) == 0
    assert (run / "eval.json").read_bytes() != old_eval
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"]  # no .done.replaced-PID left behind


# ---------------------------------------------------------------- item 2: late checks before touching the old run

def _targets(cfg: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg["method"] = {"name": "lora", "targets": ["nonexistent_proj"]}


def _reference(cfg: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg["forgetting"] = {"reference": str(tmp / "nonexistent.jsonl")}


def _metric(cfg: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg["train"] = {**cfg["train"], "early_stopping": {"metric": "val_nonsense"}}


def _model_fails_to_load(cfg: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.models import loading as models
    from tuneforge.errors import TuneforgeError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TuneforgeError("model.safetensors is truncated (stand-in for any model that fails to load)")

    monkeypatch.setattr(models, "load_classifier", broken)


def _nothing_trains(cfg: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneforge.methods.lora import LoraMethod

    apply = LoraMethod.apply
    monkeypatch.setattr(LoraMethod, "apply", lambda self, *a: apply(self, *a).requires_grad_(False))


@pytest.mark.parametrize("mistake", [_targets, _reference, _metric, _model_fails_to_load, _nothing_trains])
def test_overwrite_with_a_late_mistake_keeps_the_finished_run(mistake: Any, tmp_path: Path, base: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = copy_run(base, tmp_path)
    cfg = json.loads(json.dumps({**base["cfg"], "output_dir": str(tmp_path / "runs")}))
    mistake(cfg, tmp_path, monkeypatch)
    before = tree(run)
    one_error(capsys, ["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--overwrite", "--quiet"])
    assert tree(run) == before


def test_overwrite_with_a_truncated_model_file_keeps_the_finished_run(tmp_path: Path, base: dict[str, Any]) -> None:
    """Whatever the message for a broken model file, the old run survives (the model loads before it is touched)."""
    model = tmp_path / "broken-model"
    shutil.copytree(base["model"], model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    run, _ = copy_run(base, tmp_path)
    cfg = {**base["cfg"], "output_dir": str(tmp_path / "runs"), "model": str(model)}
    before = tree(run)
    try:
        rc = cli.main(["train", str(write_config(tmp_path / "c.yaml", **cfg)), "--overwrite", "--quiet"])
    except Exception:  # noqa: BLE001 - the message is models.py's business; the run directory is ours
        rc = None
    assert rc != 0
    assert tree(run) == before


# ---------------------------------------------------------------- item 3: the early-stopping metric

def test_early_stopping_metric_choices_are_metrics_not_counts(tmp_path: Path, base: dict[str, Any],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {**base["cfg"], "output_dir": str(tmp_path / "runs")}
    line = one_error(capsys, ["train", str(write_config(tmp_path / "c.yaml", **cfg)),
                              "train.early_stopping.metric=val_nonsense", "--quiet"])
    choices = set(line.split("choose one of ")[1].split(", "))
    assert {"val_loss", "val_accuracy", "val_f1_macro"} <= choices and not choices & {"val_n", "val_tokens"}
    assert not (tmp_path / "runs" / "done").exists()


def test_declared_validation_metrics_are_what_evaluate_computes(base: dict[str, Any]) -> None:
    """The declaration the config is checked against must match the numbers the loop really sees."""
    import copy

    import torch

    from tuneforge.models import loading as models
    from tuneforge.tasks.classification import ClassificationTask
    from tuneforge.config import load_config
    from tuneforge.data.records import Record
    from tuneforge.tasks.instruction.task import InstructionTask

    counts = {"n", "tokens"}
    tok = models.load_tokenizer(models.ModelSource("tiny", base["model"]))
    task = ClassificationTask(tok, ["negative", "neutral", "positive"], "text", "label", 32)
    clf = models.load_classifier(models.ModelSource("tiny", base["model"]), task.labels)
    rows = [Record(r, "v.jsonl", i + 1) for i, r in enumerate(sentiment_rows(6))]
    got = task.evaluate(clf, task.encode(rows, "validation"), 8, torch.device("cpu"), None)
    assert {k for k, v in got.items() if isinstance(v, (int, float))} - counts == set(task.metrics)

    from transformers import LlamaConfig, LlamaForCausalLM

    smol = models.load_tokenizer(models.resolve("smollm2"))
    cfg = load_config(None, base={"name": "t", "task": "instruction", "model": "smollm2", "data": {"train": "x.jsonl"}})
    itask = InstructionTask.from_config(cfg, copy.deepcopy(smol))
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(smol), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=smol.pad_token_id))
    pairs = [Record({"instruction": f"What is code E{i}?", "output": f"Error {i}."}, "v.jsonl", i + 1)
             for i in range(3)]
    got = itask.evaluate(lm, itask.encode(pairs, "validation"), 8, torch.device("cpu"), None)
    assert {k for k, v in got.items() if isinstance(v, (int, float))} - counts == set(itask.metrics)


# ---------------------------------------------------------------- item 8: resume decides before writing

def test_refused_resume_writes_nothing(tmp_path: Path, base: dict[str, Any],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    run, config = copy_run(base, tmp_path, finished=False)
    before = tree(run)
    line = one_error(capsys, ["train", str(config), "method.r=16", "--resume", "--quiet"])
    assert "`method.r`" in line and "8 → 16" in line and "--overwrite" in line
    assert tree(run) == before  # config.yaml, data_audit.json, metrics.jsonl, checkpoints: byte-identical


def test_resume_with_other_training_data_is_refused(tmp_path: Path, base: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run, config = copy_run(base, tmp_path, finished=False)
    changed = tmp_path / "train.jsonl"
    write_jsonl(changed, sentiment_rows(30)[:-1] + sentiment_rows(1, seed=7))
    before = tree(run)
    line = one_error(capsys, ["train", str(config), f"data.train={changed}", "--resume", "--quiet"])
    assert "`data.train`" in line and str(changed) in line and "restore that file" in line and "--overwrite" in line
    assert tree(run) == before


def test_resume_accepts_the_same_data_under_another_path_and_notes_other_changes(
        tmp_path: Path, base: dict[str, Any]) -> None:
    run, config = copy_run(base, tmp_path, finished=False)
    moved = tmp_path / "moved.jsonl"
    shutil.copy(base["data"], moved)
    assert cli.main(["train", str(config), f"data.train={moved}", "train.lr=2e-3", "eval.batch_size=16",
                     "--resume", "--quiet"]) == 0
    notes = json.loads((run / "eval.json").read_text(encoding="utf-8"))["notes"]
    assert any(n.startswith("resumed from") for n in notes), notes
    assert any("train.lr changed since the checkpoint" in n for n in notes), notes
    assert any("`eval.batch_size` changed since the run started" in n for n in notes), notes


# ---------------------------------------------------------------- item 11: SIGTERM and Ctrl-C

def _logged_step(run: Path) -> int:
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return 0
    return max((json.loads(line)["step"] for line in lines if line.endswith("\n")), default=0)


def _stop_at(proc: subprocess.Popen, run: Path, step: int, sig: int) -> tuple[int, list[str]]:
    deadline = time.monotonic() + TIMEOUT
    while _logged_step(run) < step:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training ended or stalled before step {step}: {proc.communicate()[1][-2000:]}")
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("sig,status,checkpoints", [(signal.SIGTERM, 143, True), (signal.SIGINT, 130, False)])
def test_signal_during_training_says_what_was_saved(sig: int, status: int, checkpoints: bool, tmp_path: Path,
                                                    base: dict[str, Any]) -> None:
    if sig == signal.SIGINT and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here, so a child python would ignore it too")
    cfg = tiny_train_config(base["model"], base["data"], tmp_path / "runs", name="cut", epochs=8,
                            checkpoint_every=2 if checkpoints else None)
    config = write_config(tmp_path / "c.yaml", **cfg)
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "train", str(config), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    rc, lines = _stop_at(proc, tmp_path / "runs" / "cut", 5, sig)
    assert rc == status, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    line = lines[0]
    assert line.startswith(f"interrupted ({'SIGTERM' if sig == signal.SIGTERM else 'Ctrl-C'})"), line
    if not checkpoints:
        assert "no checkpoint was written" in line and "train.checkpoint_every" in line and "--overwrite" in line
        return
    assert "the last complete checkpoint is" in line and line.endswith("--resume"), line
    command = shlex.split(line.split("continue with: ")[1])
    assert command[:2] == ["tuneforge", "train"]
    done = subprocess.run([sys.executable, "-m", "tuneforge.cli", *command[1:], "--quiet"], capture_output=True,
                          text=True, env=ENV, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    notes = json.loads((tmp_path / "runs" / "cut" / "eval.json").read_text(encoding="utf-8"))["notes"]
    assert any(n.startswith("resumed from") for n in notes), notes


def test_interrupted_before_training_says_nothing_was_changed(tmp_path: Path, base: dict[str, Any]) -> None:
    from tuneforge.config import load_config

    args = cli.build_parser().parse_args(["train", "c.yaml", "train.lr=1e-3"])
    cfg = load_config(None, base={**base["cfg"], "output_dir": str(tmp_path / "runs")})
    assert "nothing was written" in cli.stopped_line(cfg, args, None, cli.Terminated())
    run, _ = copy_run(base, tmp_path)
    line = cli.stopped_line(cfg, args, cli._dir_id(run), KeyboardInterrupt())  # --overwrite stopped before the swap
    assert line.startswith("interrupted (Ctrl-C)") and "was left as it was" in line


# ---------------------------------------------------------------- weak messages: predict and eval

def test_predict_prompt_on_a_classifier_is_refused(base: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error(capsys, ["predict", str(base["run"]), "--prompt", "great kettle"])
    assert "--prompt is for instruction runs" in line and "--text" in line
    assert cli.main(["predict", str(base["run"]), "--text", "great kettle"]) == 0


def test_eval_with_other_columns_names_the_column_to_rename(tmp_path: Path, base: dict[str, Any],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "held.jsonl", [{"review": r["text"], "label": r["label"]} for r in sentiment_rows(4)])
    line = one_error(capsys, ["eval", str(base["run"]), "--data", str(data)])
    assert "held.jsonl:1" in line and "'text'" in line and "rename that column" in line and "review" in line
    assert "data.text" not in line  # eval cannot set it
