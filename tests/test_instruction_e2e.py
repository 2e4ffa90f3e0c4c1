"""End to end on the embedded SmolLM2 (GGUF): loading, and a golden run of the real CLI.

The golden run trains LoRA on the first 16 support-bot records for one epoch (4 steps), in fp32 with a fixed
seed, and compares the logged training losses and the test loss to stored values (torchtune-style recipe
test). If a deliberate change moves them, rerun with TUNEFORGE_PRINT_GOLDEN=1 and update GOLDEN.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "support-bot"

GOLDEN = {  # recorded 2026-11-26, torch 2.13.0+cpu, transformers 5.24.0, peft 0.21.2
    # re-recorded when data.packing became auto (length-bucketed batches: other examples share a step)
    "train_loss": [4.105955, 3.437114, 3.155473, 2.359958],   # per optimizer step
    "test_loss_base": 4.438088606243674,
    "test_loss_final": 2.2338439694300356,
}
RTOL = 5e-3  # fp32 on CPU: thread count and kernel choice move the last digits only


@pytest.mark.slow
def test_gguf_loads_as_plain_float_llama_with_tied_embeddings():
    from tuneforge.models import loading as models

    src = models.resolve("smollm2")
    assert src.gguf_file and (src.path / src.gguf_file).is_file()
    tok = models.load_tokenizer(src)
    model = models.load_causal_lm(src).eval()
    assert getattr(model.config, "quantization_config", None) is None  # trainable and save_pretrained-able
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])  # de-quantized weights are right


@pytest.mark.slow
def test_golden_support_bot_run(tmp_path, capsys):
    from tuneforge.cli import main

    if not (DATA / "train.jsonl").exists():
        pytest.skip("examples/support-bot not generated")
    test_rows = (DATA / "test.jsonl").read_text(encoding="utf-8").splitlines()[:6]
    (tmp_path / "test.jsonl").write_text("\n".join(test_rows) + "\n", encoding="utf-8")
    # fp32 on one thread: the same numbers on any CPU (bf16 autocast is chosen only where AMX makes it fast)
    overrides = [f"output_dir={tmp_path / 'runs'}", "name=golden", "data.limit=16", "data.validation=null",
                 f"data.test={tmp_path / 'test.jsonl'}", "train.epochs=1", "train.batch_size=4",
                 "train.precision=fp32", "train.threads=1", "train.lr=2.0e-3", "train.log_every=1", "train.warmup=0", "method.dropout=0.0",
                 "eval.max_new_tokens=8", "eval.samples=2", "forgetting.reference=null"]
    assert main(["train", str(ROOT / "examples" / "support-bot.yaml"), *overrides, "--quiet"]) == 0
    run = tmp_path / "runs" / "golden"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    ev = json.loads((run / "eval.json").read_text())
    got = {"train_loss": losses, "test_loss_base": ev["base"]["test"]["loss"],
           "test_loss_final": ev["final"]["test"]["loss"]}
    if os.environ.get("TUNEFORGE_PRINT_GOLDEN"):
        with capsys.disabled():
            print("\nGOLDEN =", json.dumps(got, indent=4))
    assert len(losses) == 4
    assert losses == pytest.approx(GOLDEN["train_loss"], rel=RTOL)
    assert got["test_loss_base"] == pytest.approx(GOLDEN["test_loss_base"], rel=RTOL)
    assert got["test_loss_final"] == pytest.approx(GOLDEN["test_loss_final"], rel=RTOL)
    assert got["test_loss_final"] < got["test_loss_base"]  # four steps already teach the format
    final = ev["final"]["test"]
    assert {"exact_match", "token_f1", "rouge_l", "fact_accuracy", "perplexity"} <= set(final)
    assert len(final["samples"]) == 2
    assert (run / "model" / "adapter_model.safetensors").exists()
    meta = json.loads((run / "model" / "tuneforge.json").read_text())
    assert meta["formatting"]["template_source"] == "tokenizer"
