"""Never lose a run, with real processes: SIGKILL at a random step then `--resume` ends bitwise equal to an
uninterrupted run (weights, per-step losses, eval.json); a second writer of a run directory is refused."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_tiny import make_tiny_bert, sentiment_rows, tiny_train_config, write_config, write_jsonl

CLI = [sys.executable, "-m", "tuneforge.cli", "train"]
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
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("resume")
    model = make_tiny_bert(root / "tiny-bert")
    train = write_jsonl(root / "train.jsonl", sentiment_rows(40))
    # 32 training rows / batch 4 = 8 steps per epoch, 3 epochs; a checkpoint every 2 steps and each epoch end
    cfg = tiny_train_config(model, train, root / "runs", name="run", epochs=3, checkpoint_every=2,
                            keep_checkpoints=2, early_stopping={"patience": None, "restore_best": True})
    return {"root": root, "config": write_config(root / "tiny.yaml", **cfg), "runs": root / "runs", "steps": 24}


def start(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, str(config), "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, err


def logged_steps(run_dir: Path) -> int:
    """The newest step with a complete line in metrics.jsonl (0 before the first)."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return 0
    steps = [json.loads(line)["step"] for line in lines if line.endswith("\n")]
    return max(steps, default=0)


def kill_at_step(proc: subprocess.Popen, run_dir: Path, step: int) -> int:
    """SIGKILL the training process once it has logged `step`; returns the step it had reached."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        reached = logged_steps(run_dir)
        if reached >= step:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return reached
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before step {step}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("timed out waiting for training to reach the kill step")


def comparable_rows(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def final_metrics(run_dir: Path) -> dict[str, Any]:
    result = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    training = {k: v for k, v in result["training"].items() if k not in ("train_seconds", "tokens_per_s")}
    return {"final": result["final"], "training": training, "history": result["history"]}


def tensorboard_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, value) of train/loss as TensorBoard shows it, every event file of the run read in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [(e.step, round(e.value, 6)) for e in events.Scalars("train/loss")]


def test_sigkill_at_random_step_then_resume_is_bitwise_identical(setup: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    # "Random" but reproducible from the log: set TUNEFORGE_KILL_STEP to replay a failure.
    kill_step = int(os.environ.get("TUNEFORGE_KILL_STEP") or random.Random().randint(3, setup["steps"] - 2))
    print(f"killing at step {kill_step}")
    ref = start(setup["config"], "name=ref")
    victim = start(setup["config"], "name=cut")
    reached = kill_at_step(victim, setup["runs"] / "cut", kill_step)
    assert not (setup["runs"] / "cut" / "eval.json").exists()
    resumed = start(setup["config"], "name=cut", "resume=auto")  # the config key; --resume sets it too
    for proc in (ref, resumed):
        rc, err = finish(proc)
        assert rc == 0, err[-3000:]
    ref_dir, cut_dir = setup["runs"] / "ref", setup["runs"] / "cut"
    notes = json.loads((cut_dir / "eval.json").read_text(encoding="utf-8"))["notes"]
    assert any(n.startswith("resumed from") for n in notes), notes
    a, b = load_file(str(ref_dir / "model" / "model.safetensors")), load_file(str(cut_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all())]
    assert not different, f"killed at step {reached}: weights differ in {different[:3]}"
    assert comparable_rows(ref_dir) == comparable_rows(cut_dir), f"killed at step {reached}: metrics differ"
    assert [r["step"] for r in comparable_rows(cut_dir) if r["split"] == "train"] == list(range(1, setup["steps"] + 1))
    assert final_metrics(ref_dir) == final_metrics(cut_dir)
    assert tensorboard_losses(cut_dir) == tensorboard_losses(ref_dir), "TensorBoard kept the killed process's steps"
    ckpts = sorted(p.name for p in (cut_dir / "checkpoints").iterdir())
    assert all(name.startswith("step-") for name in ckpts), ckpts  # no temporary leftovers


def test_second_writer_of_a_run_directory_is_refused(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """A real process holds the run directory's lock; the CLI refuses to resume into it (in-process) or to
    overwrite it (a real CLI process), and touches nothing."""
    from tuneforge import cli

    run_dir = setup["runs"] / "locked"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tuneforge.runs.rundir import lock\n"
         "with lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(300)", str(run_dir)],
        stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = start(setup["config"], "name=locked", "--overwrite")
        capsys.readouterr()
        results = [(cli.main(["train", str(setup["config"]), "name=locked", "--resume", "--quiet"]),
                    capsys.readouterr().err), finish(proc)]
        for rc, err in results:
            assert rc == 2, err[-2000:]
            lines = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(lines) == 1 and "in use by another tuneforge process" in lines[0], err[-2000:]
            assert "Traceback" not in err
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "metrics.jsonl"]  # nothing touched
        assert (run_dir / "metrics.jsonl").read_text().count("\n") == 1
    finally:
        holder.kill()
        holder.wait(timeout=30)
