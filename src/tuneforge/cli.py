"""The `tuneforge` command. User mistakes print one line (`error: ...`) and exit 2, never a traceback."""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, TuneforgeError
from .quiet import silence_known_warnings


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .recipes.train import train
    from .training import distributed

    world = distributed.start()  # under torchrun / accelerate launch: join the others before anything can fail
    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    cfg = load_config(args.config, overrides)
    if args.cv:
        from .recipes.crossval import cross_validate

        summary = cross_validate(cfg, args.cv, overwrite=args.overwrite)
        if world.main:
            print(json.dumps(summary["summary"], indent=2))
        distributed.stop()
        return 0
    before = _dir_id(cfg.run_dir)
    try:
        outcome = train(cfg, overwrite=args.overwrite, quiet=args.quiet)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Terminated): say what is kept and how to go on
        if world.main and not distributed.peer_failed():  # every process got the signal: rank 0 speaks
            print(stopped_line(cfg, args, before, stop), file=sys.stderr)
        return exit_status(stop)
    if world.main:
        print_summary(outcome.run_dir, outcome.eval)
    distributed.stop()
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `with` block unwinds (locks, logs, temporary files)."""


def exit_status(stop: BaseException) -> int:
    return 143 if isinstance(stop, Terminated) else 130  # 128 + the signal number, as the shell reports it


def _dir_id(path: Path) -> tuple[int, int] | None:
    """Which directory is at `path` now (device, inode), or None: tells a replaced run from an untouched one."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def stopped_line(cfg: Any, args: argparse.Namespace, before: tuple[int, int] | None, stop: BaseException) -> str:
    """One line for an interrupted `train`: what was saved, and the exact command that continues."""
    import shlex

    from .training.checkpoint import Checkpointer

    why = f"interrupted ({'SIGTERM' if isinstance(stop, Terminated) else 'Ctrl-C'})"
    run_dir, now = cfg.run_dir, _dir_id(cfg.run_dir)
    if now is None:
        return f"{why} before {run_dir} was created; nothing was written"
    if now == before and not cfg.resume:
        return f"{why} before training started; {run_dir} was left as it was"
    command = ["tuneforge", "train", args.config, *(o for o in args.overrides if not o.startswith("resume="))]
    last = Checkpointer(run_dir / "checkpoints", cfg.train, None).latest()
    if last is not None:
        return (f"{why}: the last complete checkpoint is {last}; continue with: "
                + shlex.join(command + ["--resume"]))
    return (f"{why}: no checkpoint was written in {run_dir} (set train.checkpoint_every=N to make a run "
            "resumable); start again with: " + shlex.join(command + ["--overwrite"]))


def print_summary(run_dir: Path, results: dict[str, Any]) -> None:
    from .tasks import task_class

    rows = [(stage, split, m) for stage in ("pretrained", "base", "final")
            for split, m in results.get(stage, {}).items()
            if split != "train"]
    # the task's headline metrics that this run computed (fact_accuracy needs facts, json_validity a schema)
    keys = [k for k in task_class(results["task"]).headline
            if any(isinstance(m.get(k), (int, float)) for *_, m in rows)]
    width = {k: max(17, len(k) + 2) for k in keys}
    print(f"\nrun: {run_dir}")
    header = f"{'model':<12}{'split':<12}" + "".join(f"{k:>{width[k]}}" for k in keys)
    print(header)
    label = {"pretrained": "pretrained", "base": "base", "final": "fine-tuned"}
    for stage, split, m in rows:
        cells = "".join(f"{m[k]:>{width[k]}.4f}" if isinstance(m.get(k), (int, float)) else f"{'-':>{width[k]}}"
                        for k in keys)
        print(f"{label[stage]:<12}{split:<12}{cells}")
    from .evaluation.analysis import headline_split
    from .evaluation.verdict import paragraph

    split = headline_split(results)
    ci = results.get("final", {}).get(split or "", {}).get("ci", {})
    if ci:
        print(f"95% intervals (fine-tuned, {split}): "
              + ", ".join(f"{k} {ci[k][0]:.3f}–{ci[k][1]:.3f}" for k in keys if k in ci))
    diag = results.get("diagnosis")
    if diag:
        print(f"diagnosis: {diag.get('summary', diag['label'])}" + (f" — {diag['advice'][0]}" if diag.get("advice")
                                                                   else ""))
    t = results.get("training", {})
    if t:
        print(f"trained {t['steps']} steps in {t['train_seconds']:.1f}s ({t['tokens_per_s']:,.0f} tokens/s); "
              f"{t['trainable_params']:,} trainable of {t['total_params']:,} parameters")
    print(f"verdict: {paragraph(results, task_class(results['task']))['text']}")
    print(f"report: {run_dir / 'report.html'}")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .recipes.inference import evaluate_run

    metrics = evaluate_run(Path(args.run), args.data)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        width = max([20] + [len(k) + 2 for k in metrics])
        ci = metrics.get("ci", {})
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                interval = f"   95% CI {ci[k][0]:.4f}–{ci[k][1]:.4f}" if k in ci else ""
                print(f"{k:<{width}}{v:.4f}{interval}" if isinstance(v, float) else f"{k:<{width}}{v}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .recipes.inference import predict_run
    from .runs.reading import run_task
    from .tasks import task_class

    if not args.text and not args.data and not args.prompt:
        raise TuneforgeError("give --text \"...\", --prompt \"...\" or --data FILE")
    task = run_task(Path(args.run))  # --text goes to a run that labels texts, --prompt to one that generates
    generates = task_class(task).generates
    if args.prompt and not generates:
        raise TuneforgeError(f"--prompt is for instruction runs and {args.run} is a {task} run; "
                             "give the text to classify with --text")
    if args.text and generates:
        raise TuneforgeError(f"--text is for classification runs and {args.run} answers prompts (task: {task}); "
                             "give the prompt with --prompt")
    rows = predict_run(Path(args.run), texts=(args.text or []) + (args.prompt or []), data=args.data)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from .recipes.scan import scan_command

    return scan_command(args.data, args.config, args.out, args.text)


def _cmd_chat(args: argparse.Namespace) -> int:
    from .recipes.chat import chat_command

    return chat_command(Path(args.run), max_new_tokens=args.max_new_tokens)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .recipes.compare import compare_command
    from .training.distributed import refuse_launch

    refuse_launch("compare")

    return compare_command(args.config, args.methods, args.sizes, args.overrides, overwrite=args.overwrite)


def _cmd_export(args: argparse.Namespace) -> int:
    from .recipes.export import export_command

    return export_command(Path(args.run), Path(args.out) if args.out else None, merge=args.merge, dtype=args.dtype,
                          fmt=args.format)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .recipes.serve import serve_command

    return serve_command(args.run, host=args.host, port=args.port, redact_output=args.redact_output)


def _cmd_report(args: argparse.Namespace) -> int:
    from .recipes.report import report_command

    return report_command(args.runs, args.out)


def _cmd_audit(args: argparse.Namespace) -> int:
    from .recipes.audit import audit_command

    return audit_command(args.run, args.json)


def _cmd_sequence(args: argparse.Namespace) -> int:
    from .recipes.sequence import sequence_command
    from .training.distributed import refuse_launch

    refuse_launch("sequence")

    return sequence_command(args.config, args.overrides, overwrite=args.overwrite, variants=args.variants,
                            quiet=args.quiet)


def _cmd_advise(args: argparse.Namespace) -> int:
    from .recipes.advise import advise_command

    return advise_command(args.config, args.overrides, args.memory_gb, args.gpu_gb, args.hours, args.methods,
                          args.out, args.overwrite)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _cmd_train, "eval": _cmd_eval, "predict": _cmd_predict, "scan": _cmd_scan,
    "chat": _cmd_chat, "compare": _cmd_compare, "export": _cmd_export, "sequence": _cmd_sequence,
    "serve": _cmd_serve,
    "report": _cmd_report, "audit": _cmd_audit,
    "advise": _cmd_advise,
}


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = argparse.ArgumentParser(prog="tuneforge", description="Fine-tune pretrained language models and "
                                     "find out honestly whether it worked.")
    parser.add_argument("--version", action="version", version=f"tuneforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fine-tune per a YAML config (dotted overrides: train.lr=3e-4)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. method.r=16 train.epochs=2")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    p.add_argument("--cv", type=int, default=0, metavar="K", help="K-fold cross-validation instead of one run")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("eval", help="evaluate a trained run on a data file")
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="predict with a trained run")
    p.add_argument("run")
    p.add_argument("--text", action="append", help="text to classify (repeatable)")
    p.add_argument("--prompt", action="append", help="prompt for an instruction run (repeatable)")
    p.add_argument("--data", help="a data file of texts/prompts")

    p = sub.add_parser("scan", help="PII and leakage audit of data files, no training")
    p.add_argument("data", nargs="*", help="data files (first is train, others are checked against it)")
    p.add_argument("--config", help="take files, columns and policies from a config")
    p.add_argument("--text", action="append", help="text column(s) to scan (default: every text field)")
    p.add_argument("--out", help="write data_audit.json here")

    p = sub.add_parser("chat", help="talk to an instruction-tuned run (streams tokens)")
    p.add_argument("run")
    p.add_argument("--max-new-tokens", type=int, default=256)

    p = sub.add_parser("compare", help="train the same task under several methods (and data sizes)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--methods", default="full,lora,adapter,scratch")
    p.add_argument("--sizes", default="", help="comma-separated training-set sizes for learning curves")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("sequence", help="train tasks one after another (A then B) and measure forgetting of A "
                       "under plain/replay/EWC variants")
    p.add_argument("config", help="a sequence file, e.g. examples/sequence.yaml")
    p.add_argument("overrides", nargs="*", help="key=value applied to every task")
    p.add_argument("--variants", default="", help="comma-separated subset of the file's variants")
    p.add_argument("--overwrite", action="store_true", help="retrain runs that already finished")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("export", help="write a run's model for plain transformers (--merge folds adapters in)")
    p.add_argument("run")
    p.add_argument("--out", help="output directory (default: RUN/export)")
    p.add_argument("--merge", action="store_true")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="weights of a merged export (bf16/fp16: half the size)")
    p.add_argument("--format", default="hf", choices=["hf", "gguf"],
                   help="gguf: one GGUF file + Ollama Modelfile (Llama-family instruction runs)")

    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP API for a finished run (FastAPI + uvicorn)")
    p.add_argument("run")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--redact-output", action="store_true", help="run the PII detector over generated text")

    _add_advise(sub)

    p = sub.add_parser("report", help="rebuild a run's report.html; several runs: also a side-by-side comparison")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", help="the comparison page (default: compare-A-vs-B.html beside the first run)")
    p = sub.add_parser("audit", help="memorization audit of a finished run: membership inference, canary exposure")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true", help="print audit.json instead of sentences")
    return parser


def _add_advise(sub: Any) -> None:
    p = sub.add_parser("advise", help="before training: is fine-tuning needed, which method fits the memory and "
                       "time, which settings — measured on the config's data in about a minute")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--memory-gb", type=float, help="CPU RAM for training (default: this machine's)")
    p.add_argument("--gpu-gb", type=float, help="judge memory for a GPU of this size instead (e.g. 24)")
    p.add_argument("--hours", type=float, help="training time allowed on this machine")
    p.add_argument("--methods", default="full,lora,qlora,adapter", help="the methods measured")
    p.add_argument("--out", help="the advice directory (default: <output_dir>/<name>-advice)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier advice there")


def main(argv: list[str] | None = None) -> int:
    silence_known_warnings()  # before any third-party import, so a user's error stays one line
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting `overrides` at the first flag; `train c.yaml --resume train.lr=1` is natural too
    if extra and isinstance(getattr(args, "overrides", None), list) \
            and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with _SigtermRaises():
            return COMMANDS[args.command](args)
    except ConfigError as e:
        _say(e, f"error: {e}")
        return 2
    except TuneforgeError as e:
        _say(e, f"error: {e}")
        return 2
    except OSError as e:  # the machine, not the input: a full disk or a permission anywhere (logs, caches)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        where = f" ({e.filename})" if e.filename else ""
        fix = "free space, then rerun (train: with --resume)" if full else "check the path and its permissions"
        _say(e, f"error: {e.strerror or e}{where}; {fix}")
        return 2
    except KeyboardInterrupt as stop:
        print("interrupted", file=sys.stderr)
        return exit_status(stop)
    except Exception as e:  # not a user mistake; on a process of a distributed run, tell the others first
        code = _crashed(e)
        if code is None:
            raise
        return code


def _distributed() -> Any:
    """training/distributed.py once a command has imported it (it imports torch; other commands need not)."""
    return sys.modules.get("tuneforge.training.distributed")


def _say(error: BaseException, line: str) -> None:
    """Print the error line; under a multi-process launcher only the process that failed first does (the
    others are told to stop), so the user sees one line."""
    dist = _distributed()
    if dist is None or dist.report(error):
        print(line, file=sys.stderr)


def _crashed(error: BaseException) -> int | None:
    dist = _distributed()
    return None if dist is None or dist.world_from_env().size == 1 else dist.crashed(error)


class _SigtermRaises:
    """While a command runs, SIGTERM raises Terminated (Python's default would exit without a word)."""

    def __enter__(self) -> None:
        import signal
        import threading

        self.installed = threading.current_thread() is threading.main_thread()  # signals reach only it
        if self.installed:
            self.previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _raise_terminated)

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
