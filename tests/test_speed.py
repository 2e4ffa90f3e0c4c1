"""Speed levers change speed and memory, never what the model computes (beyond bf16 rounding)."""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tuneforge.config import MethodConfig
from tuneforge.methods import get_method
from tuneforge.training.speed import (compile_blocks, lean_frozen_weights, lean_lora_inputs, optimize_for_training,
                                     should_compile, transformer_blocks)

ROOT = Path(__file__).resolve().parent.parent


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64))


def lora(model: torch.nn.Module, dropout: float = 0.0) -> torch.nn.Module:
    return get_method("lora").apply(model, MethodConfig(name="lora", r=4, alpha=8, dropout=dropout), "instruction")


def trainable_grads(model: torch.nn.Module, ids: torch.Tensor, bf16: bool = True) -> tuple[float, dict]:
    """Loss and the trainable parameters' gradients of one forward/backward (bf16 autocast by default)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def assert_grads_close(ref: dict, other: dict, atol: float, rtol: float) -> None:
    assert ref.keys() == other.keys() and ref
    for n in ref:
        assert torch.allclose(ref[n], other[n], atol=atol, rtol=rtol), n


def test_lean_frozen_weights_casts_only_frozen_linear_weights():
    model = lora(tiny_llama())
    before = {n: p.dtype for n, p in model.named_parameters()}
    saved = lean_frozen_weights(model, torch.bfloat16)
    after = dict(model.named_parameters())
    frozen_big = [n for n in after if ("base_layer" in n or "lm_head" in n)]
    assert frozen_big and all(after[n].dtype == torch.bfloat16 for n in frozen_big)
    assert after["base_model.model.model.embed_tokens.weight"].dtype == torch.float32  # fp32 residual stream
    assert all(after[n].dtype == torch.float32 for n in after if "lora_" in n)       # trainable: fp32 masters
    assert all(after[n].dtype == torch.float32 for n in after if "norm" in n)        # norms untouched
    expected = sum(p.numel() * 2 for n, p in after.items() if before[n] != p.dtype)
    assert saved == expected > 0
    assert lean_frozen_weights(model, None) == 0


def test_lean_frozen_weights_keeps_autocast_outputs_and_gradients():
    ids = torch.randint(3, 300, (2, 16))
    ref, lean = lora(tiny_llama()), lora(tiny_llama())
    assert lean_frozen_weights(lean, torch.bfloat16) > 0
    # Under autocast the fp32 weights were rounded to bf16 for every matmul anyway: same arithmetic.
    assert_grads_close(trainable_grads(ref, ids)[1], trainable_grads(lean, ids)[1], atol=1e-5, rtol=1e-3)


def test_lean_lora_inputs_keeps_autocast_gradients():
    ids = torch.randint(3, 300, (2, 16))
    ref, lean = lora(tiny_llama()), lora(tiny_llama())
    assert lean_lora_inputs(lean) == 2 * 7  # every LoRA layer: q, k, v, o, gate, up, down in 2 blocks
    assert lean_lora_inputs(lean) == 0      # already off
    # q/k/v now stay bf16 into attention instead of fp32: equal up to bf16 rounding.
    assert_grads_close(trainable_grads(ref, ids)[1], trainable_grads(lean, ids)[1], atol=1e-4, rtol=2e-2)


def test_optimize_for_training_on_cpu_touches_neither_weights_nor_fp32_runs():
    model = lora(tiny_llama())
    assert optimize_for_training(model, get_method("lora"), torch.device("cpu"), None, "none") == []
    notes = optimize_for_training(model, get_method("lora"), torch.device("cpu"), torch.bfloat16, "none")
    assert len(notes) == 1 and "LoRA inputs" in notes[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # bf16 storage is for CUDA only


def test_transformer_blocks_finds_the_decoder_layers_through_peft():
    model = lora(tiny_llama())
    blocks = transformer_blocks(model)
    assert blocks is not None and len(blocks) == 2
    assert type(blocks[0]).__name__ == "LlamaDecoderLayer"


def inductor_works() -> bool:
    """Whether this machine's toolchain (C++ compiler, Python headers) lets torch.compile build CPU kernels."""
    if shutil.which("cc") is None and shutil.which("gcc") is None and shutil.which("g++") is None:
        return False
    try:
        doubled = torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
        return bool((doubled == 3).all())
    except Exception:  # noqa: BLE001 - any toolchain failure means: cannot test compilation here
        return False


def test_compiled_blocks_give_the_same_loss_and_gradients():
    if not inductor_works():
        pytest.skip("torch.compile cannot build CPU kernels on this machine (no compiler or Python headers)")
    ids = torch.randint(3, 300, (2, 16))
    ref, comp = lora(tiny_llama()), lora(tiny_llama())
    assert compile_blocks(comp) == 2
    (ref_loss, ref_grads), (comp_loss, comp_grads) = trainable_grads(ref, ids, False), trainable_grads(comp, ids, False)
    assert ref_loss == pytest.approx(comp_loss, rel=1e-4)
    assert_grads_close(ref_grads, comp_grads, atol=1e-5, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_blocks_give_the_same_loss_and_gradients():
    ids = torch.randint(3, 300, (2, 16), device="cuda")
    ref, comp = lora(tiny_llama()).cuda(), lora(tiny_llama()).cuda()
    notes = optimize_for_training(comp, get_method("lora"), torch.device("cuda"), None, "graphs")
    assert notes == ["speed: torch.compile on 2 transformer blocks, with CUDA graphs"]
    for _ in range(3):  # warm-up, recording, replay
        comp.zero_grad(set_to_none=True)
        comp_loss, comp_grads = trainable_grads(comp, ids, False)
    ref_loss, ref_grads = trainable_grads(ref, ids, False)
    assert ref_loss == pytest.approx(comp_loss, rel=1e-4)
    assert_grads_close(ref_grads, comp_grads, atol=1e-5, rtol=1e-3)


def test_compile_settings():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [should_compile(s, cpu) for s in ("auto", "blocks", "graphs", "none")] == [False, True, True, False]
    assert [should_compile(s, cuda) for s in ("auto", "blocks", "graphs", "none")] == [True, True, True, False]


def test_gpu_benchmark_script_runs_on_a_tiny_shape():
    """bench/gpu_llama.py is run on a lent GPU for minutes at a time: it must work the first time."""
    spec = importlib.util.spec_from_file_location("gpu_llama", ROOT / "bench" / "gpu_llama.py")
    gpu = importlib.util.module_from_spec(spec)
    sys.modules["gpu_llama"] = gpu
    spec.loader.exec_module(gpu)
    rows = {case: gpu.child(case, "tiny", steps=2, warmup=2) for case in gpu.CASES if "compile" not in case}
    for case, row in rows.items():
        assert row["tokens_per_s"] > 0, case
        assert row["flops_per_token"] > 0
    assert rows["tf_lora"]["method"] == "lora" and rows["tf_lora"]["final_loss"] > 0
    assert gpu.child("tfbf16_lora", "tiny", steps=2, warmup=2)["tokens_per_s"] > 0  # a measured variant
    # LoRA's formula counts 4N per token, full fine-tuning 6N (same N, the same attention term)
    shape = gpu.SHAPES["tiny"]
    attn = 12 * shape["num_hidden_layers"] * shape["hidden_size"] * shape["seq"]
    n_lora = (rows["tf_lora"]["flops_per_token"] - attn) / 4
    n_full = (rows["tf_full"]["flops_per_token"] - attn) / 6
    assert n_lora == n_full
    gpu.print_table([{**r, "case": c} for c, r in rows.items()])


def test_precision_auto_takes_bf16_on_cpus_with_bf16_matmuls():
    """AMX-BF16 (Sapphire Rapids) and AVX512-BF16 (Zen 4) both make bf16 autocast faster than fp32; AVX-512
    without bf16, or AVX2, does not (bf16 would be emulated)."""
    from tuneforge.training.device import fast_bf16

    assert fast_bf16("fpu sse2 avx2 avx512f avx512_vnni amx_bf16 amx_tile")
    assert fast_bf16("fpu avx2 avx512f avx512_bf16 avx512_vnni")
    assert not fast_bf16("fpu avx2 avx512f avx512_vnni avx512_fp16")
    assert not fast_bf16("fpu sse2 avx2 fma")
    assert not fast_bf16("flags: xamx_bf16x")  # a flag is a whole word
