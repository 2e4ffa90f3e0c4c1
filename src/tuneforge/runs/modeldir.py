"""model/: what a run hands to the outside world, made to load anywhere without tuneforge.

The method's artifact and the tokenizer are saved by train; here they are made portable:
- the base is named by a stable name + revision (models/basecache.py) in adapter_config.json, so PEFT's
  Auto classes, `transformers.pipeline` and vLLM find it — a GGUF base as its de-quantized weights, written
  once to the shared cache, a classifier's base with its label names (no more LABEL_0/LABEL_1);
- the task's generation settings (stop ids, length) go to generation_config.json and its chat template, with
  the run's system prompt built in, to the tokenizer files: plain `apply_chat_template` + `generate` give
  what `tuneforge predict` gives;
- tuneforge.json records the base (name, revision, source, sha256) and model/README.md is the model card.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..models import basecache
from ..models.loading import ModelSource


def make_portable(model_dir: Path, cfg: Any, source: ModelSource, task: Any, method: Any, tokenizer: list[Path],
                  note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Make a saved model/ portable (see the module docstring); returns the base's record for tuneforge.json.

    `tokenizer`: the tokenizer files saved in model_dir (they go beside the registered base too, with the
    generation config: transformers.pipeline() takes both from an adapter's base, not from the adapter)."""
    generation = task.generation_config()
    extra = list(tokenizer)
    if generation is not None:
        (model_dir / "generation_config.json").write_text(json.dumps(generation, indent=2), encoding="utf-8")
        extra.append(model_dir / "generation_config.json")
    base = base_record(cfg, source, task, method, extra, note)
    if method.peft_format and base.get("name"):
        method.name_base(model_dir, base["name"], base.get("revision"))
    if method.saves_full_model:  # a full model is its own base: its config.json carries the task's labels
        _update_json(model_dir / "config.json", task.base_config())
    return base


def base_record(cfg: Any, source: ModelSource, task: Any, method: Any, extra: list[Path],
                note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The base's record; registered in the shared cache when model/ is an adapter PEFT must find it for.

    A continued run (`init_from`) sits on the earlier run's merged model, which only tuneforge rebuilds;
    a cache that cannot be written (read-only, full) leaves the run intact and says how to load by hand."""
    if cfg.init_from:
        return {"name": None, "source": f"the merged model of {cfg.init_from} (init_from)", "continued": True}
    write = method.peft_format
    try:
        record = basecache.register(cfg.model, source, task.base_config(), extra, write=write).as_dict()
    except OSError as e:
        if note:
            note(f"model/: the base could not be registered in the Hugging Face cache {basecache.hub_cache()} "
                 f"({e.strerror or e}); load the adapter with PeftModel.from_pretrained(base, 'model')")
        return {"name": None, "source": cfg.model, "error": str(e.strerror or e)}
    record["registered"] = write
    if Path(cfg.model).exists():  # a directory or file of the user's: named relative to the run, which moves with it
        record["source"] = os.path.relpath(os.path.abspath(cfg.model), os.path.abspath(cfg.run_dir))
    return record


def save_tokenizer(tokenizer: Any, task: Any, out: Path) -> list[Path]:
    """The tokenizer, with the task's portable chat template (if any) in place of the one training used;
    returns the files written."""
    with _template(tokenizer, task.portable_chat_template()):
        saved = tokenizer.save_pretrained(str(out))
    return sorted({Path(p) for p in saved if Path(p).is_file()})


@contextmanager
def _template(tokenizer: Any, template: str | None) -> Iterator[None]:
    if template is None:
        yield
        return
    before = tokenizer.chat_template
    tokenizer.chat_template = template
    try:
        yield
    finally:
        tokenizer.chat_template = before


def _update_json(path: Path, updates: dict[str, Any]) -> None:
    if not updates or not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(updates)
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
