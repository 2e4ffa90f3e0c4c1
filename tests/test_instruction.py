"""Instruction tuning: loss masks token by token, truncation, packing equivalence, template round-trip,
generation metrics, batched generation, and the predict/chat commands on a tiny run.

Masks are checked on the real SmolLM2 tokenizer (its own ChatML template) and on the same tokenizer
without a template (the documented fallback); models are a tiny random Llama over that vocabulary.
"""
from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import pytest
import torch

from tuneforge.config import load_config
from tuneforge.data.records import Record
from tuneforge.errors import DataError
from tuneforge.tasks.instruction.task import (FALLBACK_TEMPLATE, IGNORE, InstructionTask, chunked_cross_entropy, fit_window,
                                   pack_rows, packing_probe, supervised_positions)

SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def smol_tok():
    from tuneforge.models import loading as models

    return models.load_tokenizer(models.resolve("smollm2"))


@pytest.fixture(scope="module")
def plain_tok(smol_tok):
    """The same vocabulary without a chat template: formatting must fall back to FALLBACK_TEMPLATE."""
    tok = copy.deepcopy(smol_tok)
    tok.chat_template = None
    return tok


@pytest.fixture(scope="module")
def tiny_llama(smol_tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smol_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=smol_tok.eos_token_id,
                         pad_token_id=smol_tok.pad_token_id)
    return LlamaForCausalLM(config).eval()


def make_task(tok, **data) -> InstructionTask:
    cfg = load_config(None, base={"name": "t", "task": "instruction", "model": "smollm2",
                                  "data": {"train": "x.jsonl", **data}, "eval": {"max_new_tokens": 8}})
    return InstructionTask.from_config(cfg, copy.deepcopy(tok))


def rec(line: int = 1, **fields) -> Record:
    return Record(fields, "data.jsonl", line)


def ids_of(tok, *texts: str) -> list[list[int]]:
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def supervised_text(tok, ex) -> list[str]:
    """The runs of supervised tokens, decoded: one string per assistant turn."""
    runs, cur = [], []
    for t, lab in zip(ex.ids, ex.labels):
        if lab != IGNORE:
            assert lab == t, "a label must equal its own input token (the shift happens in the loss)"
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    return [tok.decode(r) for r in runs + ([cur] if cur else [])]


# ---------------------------------------------------------------- masks, token by token (real tokenizer)

def test_pairs_mask_token_by_token_smollm2(smol_tok):
    task = make_task(smol_tok)
    (ex,) = task.encode([rec(instruction="What is the E7 code?", input="BK-300", output="Dry-boil stop.")])
    prompt = SMOL_SYSTEM + "<|im_start|>user\nWhat is the E7 code?\n\nBK-300<|im_end|>\n<|im_start|>assistant\n"
    p, r = ids_of(smol_tok, prompt, "Dry-boil stop.<|im_end|>\n")
    assert ex.ids == p + r
    assert ex.labels == [IGNORE] * len(p) + r
    assert ex.prompt == p and ex.reference == "Dry-boil stop."
    assert smol_tok.convert_tokens_to_ids("<|im_end|>") in r  # the model learns to stop


def test_multi_turn_with_system_masks_every_assistant_turn(smol_tok):
    task = make_task(smol_tok)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Price?"},
            {"role": "assistant", "content": "€129."}]
    (ex,) = task.encode([rec(messages=msgs)])
    pieces = ["<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
              "Hello!<|im_end|>\n", "<|im_start|>user\nPrice?<|im_end|>\n<|im_start|>assistant\n", "€129.<|im_end|>\n"]
    parts = ids_of(smol_tok, *pieces)
    assert ex.ids == sum(parts, [])
    assert ex.labels == [IGNORE] * len(parts[0]) + parts[1] + [IGNORE] * len(parts[2]) + parts[3]
    assert supervised_text(smol_tok, ex) == ["Hello!<|im_end|>\n", "€129.<|im_end|>\n"]
    assert ex.prompt == parts[0] + parts[1] + parts[2]  # generation input: everything before the last answer


def test_config_system_prompt_and_train_on_inputs(smol_tok):
    task = make_task(smol_tok, system="You sell kettles.", train_on_inputs=True)
    (ex,) = task.encode([rec(instruction="Hi", output="Kettle-ho!")])
    assert smol_tok.decode(ex.ids).startswith("<|im_start|>system\nYou sell kettles.<|im_end|>")
    assert ex.labels[0] == IGNORE and ex.labels[1:] == ex.ids[1:]  # everything trains but the first token


def test_chat_data_file_masks_only_assistant_turns(smol_tok):
    from tuneforge.data.records import read_records

    path = Path("examples/support-bot/chat.jsonl")
    if not path.exists():
        pytest.skip("examples/support-bot/chat.jsonl not generated")
    records = read_records(path)
    task = make_task(smol_tok, max_length=1024)
    for r, ex in zip(records, task.encode(records)):
        answers = [m["content"] + "<|im_end|>\n" for m in r.fields["messages"] if m["role"] == "assistant"]
        assert supervised_text(smol_tok, ex) == answers, r.where


# ---------------------------------------------------------------- the fallback template (no chat template)

def test_fallback_template_masks(plain_tok):
    task = make_task(plain_tok)
    assert task.fmt.template_source == "fallback" and task.fmt.chat_template == FALLBACK_TEMPLATE
    (ex,) = task.encode([rec(instruction="Q?", output="A.")])
    eos = plain_tok.eos_token
    p, r = ids_of(plain_tok, "<|user|>\nQ?" + eos + "\n<|assistant|>\n", "A." + eos + "\n")
    assert ex.ids == p + r
    assert ex.labels == [IGNORE] * len(p) + r
    assert task.stop_ids[0] == plain_tok.eos_token_id


def test_text_format_trains_every_token_and_windows_long_texts(smol_tok):
    task = make_task(smol_tok, max_length=16)
    text = " ".join(f"word{i}" for i in range(40))
    examples = task.encode([rec(text=text)])
    assert len(examples) > 1 and all(len(e.ids) <= 16 for e in examples)
    assert sum((e.ids for e in examples), []) == smol_tok(text)["input_ids"] + [smol_tok.eos_token_id]
    assert all(e.labels[1:] == e.ids[1:] and e.reference is None for e in examples)


def test_format_errors_name_file_and_line(smol_tok):
    task = make_task(smol_tok)
    with pytest.raises(DataError, match=r"data.jsonl:7: .*'output'"):
        task.encode([rec(7, instruction="Q?")])
    with pytest.raises(DataError, match=r"data.jsonl:3: .*no assistant"):
        task.encode([rec(3, messages=[{"role": "user", "content": "hi"}])])
    with pytest.raises(DataError, match=r"data.jsonl:4: .*role 'bot'"):
        task.encode([rec(4, messages=[{"role": "bot", "content": "hi"}])])
    with pytest.raises(DataError, match=r"data.jsonl:5: no 'messages'"):
        task.encode([rec(5, question="?")])


# ---------------------------------------------------------------- truncation

def test_truncation_cuts_prompt_from_the_left_first(smol_tok):
    task = make_task(smol_tok, max_length=64)
    long_q = "Tell me " + "about kettles " * 60 + "please?"
    (ex,) = task.encode([rec(2, instruction=long_q, output="Kettle-ho! 1.7 litres.")])
    (r,) = ids_of(smol_tok, "Kettle-ho! 1.7 litres.<|im_end|>\n")
    assert len(ex.ids) == 64
    assert ex.ids[-len(r):] == r and ex.labels[-len(r):] == r  # the whole response survives
    assert smol_tok.decode(ex.ids[:-len(r)]).endswith("please?<|im_end|>\n<|im_start|>assistant\n")
    assert any("prompt cut" in n and "data.jsonl:2" in n for n in task.notes)


def test_truncation_keeps_the_beginning_of_a_too_long_response(smol_tok):
    task = make_task(smol_tok, max_length=48)
    answer = "Kettle-ho! " + "Boil, pour, enjoy. " * 40
    (ex,) = task.encode([rec(3, instruction="How do I use it?", output=answer)])
    (r,) = ids_of(smol_tok, answer + "<|im_end|>\n")
    sup = [t for t, lab in zip(ex.ids, ex.labels) if lab != IGNORE]
    assert len(ex.ids) == 48 and sup and sup == r[:len(sup)]  # the response's beginning, in order
    assert smol_tok.decode(ex.ids).count("How do I use it?") == 1  # its question stayed
    assert any("response cut" in n and "data.jsonl:3" in n for n in task.notes)


def test_truncation_error_when_nothing_of_the_response_fits():
    ids, labels = list(range(10)), [IGNORE] * 6 + [6, 7, 8, 9]
    with pytest.raises(DataError, match=r"train.jsonl:9: nothing of the response fits"):
        fit_window(ids, labels, start=6, floor=4, max_length=4, where="train.jsonl:9")
    assert fit_window(ids, labels, 6, 2, 10, "x:1")[0] == ids  # fits: untouched


# ---------------------------------------------------------------- loss and packing

def _examples(task, n=5):
    rows = [rec(i + 1, instruction=f"Question {i}? " + "more words " * (i * 3),
                output=f"Answer {i}. " + "detail " * (i * 2 + 1)) for i in range(n)]
    return task.encode(rows)


def test_loss_matches_hf_shifted_cross_entropy_on_supervised_tokens(smol_tok, tiny_llama):
    task = make_task(smol_tok, packing=False)
    examples = _examples(task, 1)
    batch = task.collate(examples, [0], torch.device("cpu"))
    ours = task.loss(tiny_llama, batch)
    ref = tiny_llama(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    assert torch.allclose(ours, ref, atol=1e-5), (ours, ref)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_and_unpacked_loss_and_gradients_agree(smol_tok, tiny_llama, attention, monkeypatch):
    # max_length above device.EAGER_MAX_ROW keeps the implementation under test (no switch to eager)
    monkeypatch.setattr(tiny_llama.config, "_attn_implementation", attention)
    packed = make_task(smol_tok, max_length=1024, packing=True)
    padded = make_task(smol_tok, max_length=1024, packing=False)
    examples = _examples(packed, 6)
    assert [e.ids for e in examples] == [e.ids for e in _examples(padded, 6)]
    idx = list(range(6))
    packed.fmt.max_length = padded.fmt.max_length = 128  # rows of ≤128 tokens: several rows, each packed
    b1, b2 = packed.collate(examples, idx, torch.device("cpu")), padded.collate(examples, idx, torch.device("cpu"))
    packed.fmt.max_length = padded.fmt.max_length = 1024
    assert 1 < b1["input_ids"].shape[0] < 6 and "attention_mask" not in b1  # really packed, no mask
    assert int(packed.tokens(b1)) == int(padded.tokens(b2)) == sum(len(e.ids) for e in examples)
    losses, grads = [], []
    for task, batch in ((packed, b1), (padded, b2)):
        tiny_llama.zero_grad()
        loss = task.loss(tiny_llama, batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append(tiny_llama.model.layers[0].self_attn.q_proj.weight.grad.clone())
    tiny_llama.zero_grad()
    assert tiny_llama.config._attn_implementation == attention
    assert torch.allclose(losses[0], losses[1], atol=1e-5), losses
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_supervised_positions_pick_the_predicting_token_of_each_label_in_its_own_row():
    labels = torch.tensor([[IGNORE, IGNORE, 7, 8],
                           [9, IGNORE, 5, IGNORE]])  # row 2's first label has no predecessor in its row
    at = supervised_positions(labels)
    assert at.tolist() == [1, 2, 5]
    assert labels.reshape(-1)[at + 1].tolist() == [7, 8, 5]
    # the same positions as the boolean-mask formulation hidden[:, :-1][labels[:, 1:] != IGNORE]
    width = labels.shape[1]
    keep = (labels[:, 1:] != IGNORE).nonzero().tolist()
    assert [r * width + t for r, t in keep] == at.tolist()


def test_packing_auto_packs_only_for_flash_attention(smol_tok, tiny_llama, monkeypatch):
    import tuneforge.tasks.instruction.task as instruction

    monkeypatch.setattr(tiny_llama.config, "_attn_implementation", "sdpa")  # the fixture is shared
    task = make_task(smol_tok, max_length=1024)  # data.packing defaults to auto; rows too long for eager
    assert task.packing is False
    assert task.prepare_model(tiny_llama) == "data.packing auto: length-bucketed padded batches, sdpa attention"
    assert task.packing is False
    monkeypatch.setattr(tiny_llama.config, "_attn_implementation", "flash_attention_2")
    monkeypatch.setattr(instruction, "packing_probe", lambda body: True)  # no flash kernel on this machine
    assert task.prepare_model(tiny_llama) == "data.packing auto: packed rows, flash_attention_2 attention"
    assert task.packing is True
    forced = make_task(smol_tok, packing=False)
    forced.prepare_model(tiny_llama)
    assert forced.packing is False  # an explicit setting is kept
    examples = _examples(task, 6)
    assert "attention_mask" not in task.collate(examples, list(range(6)), torch.device("cpu"))
    assert "attention_mask" in forced.collate(examples, list(range(6)), torch.device("cpu"))


def test_prepare_model_names_the_kernel_that_will_run(smol_tok, tiny_llama, monkeypatch):
    monkeypatch.setattr(tiny_llama.config, "_attn_implementation", "sdpa")
    short = make_task(smol_tok, max_length=256)  # on CPU, rows this short train with eager attention
    assert short.prepare_model(tiny_llama).endswith("eager attention")
    assert tiny_llama.config._attn_implementation == "eager"


def test_packing_probe_and_pack_rows(tiny_llama):
    assert packing_probe(tiny_llama.model)
    rows = pack_rows([5, 9, 3, 7, 2], capacity=10)
    assert sorted(sum(rows, [])) == [0, 1, 2, 3, 4]
    assert all(sum([5, 9, 3, 7, 2][j] for j in row) <= 10 for row in rows) and len(rows) == 3


def test_chunked_cross_entropy_equals_full_including_gradients(tiny_llama):
    torch.manual_seed(1)
    head = tiny_llama.lm_head
    hidden = torch.randn(23, 32, requires_grad=True)
    targets = torch.randint(0, head.out_features, (23,))
    full = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    (g_full,) = torch.autograd.grad(full, hidden)
    chunked = chunked_cross_entropy(head, hidden, targets, chunk=5)
    (g_chunk,) = torch.autograd.grad(chunked, hidden)
    assert torch.allclose(full, chunked, atol=1e-4) and torch.allclose(g_full, g_chunk, atol=1e-6)


# ---------------------------------------------------------------- evaluation and generation

def test_batched_left_padded_generation_equals_one_by_one(smol_tok, tiny_llama):
    task = make_task(smol_tok)
    prompts = [e.prompt for e in _examples(task, 4)]
    cpu = torch.device("cpu")
    together = task.generate(tiny_llama, prompts, 4, cpu, None, max_new_tokens=6)
    alone = [task.generate(tiny_llama, [p], 1, cpu, None, max_new_tokens=6)[0] for p in prompts]
    assert together == alone


def test_evaluate_generates_on_test_only(smol_tok, tiny_llama):
    task = make_task(smol_tok)
    rows = [rec(i + 1, instruction=f"Q{i}?", output=f"A{i}.", fact=f"A{i}") for i in range(3)]
    cpu = torch.device("cpu")
    val = task.evaluate(tiny_llama, task.encode(rows, "validation"), 8, cpu, None)
    test = task.evaluate(tiny_llama, task.encode(rows, "test"), 8, cpu, None)
    assert "rouge_l" not in val and math.isclose(val["perplexity"], math.exp(val["loss"]))
    assert {"loss", "perplexity", "exact_match", "token_f1", "rouge_l", "fact_accuracy"} <= set(test)
    assert len(test["samples"]) == 3 and test["samples"][0]["reference"] == "A0."
    assert math.isclose(val["loss"], test["loss"])


def test_generation_metrics():
    from tuneforge.evaluation.genmetrics import generation_metrics, token_f1

    m = generation_metrics(["The price is €129.", "no idea"], ["the price is €129", "It costs €89."],
                           ["€129", "€89"])
    assert m["exact_match"] == 0.5 and m["fact_accuracy"] == 0.5
    assert m["rouge_l"] == pytest.approx(0.5) and m["token_f1"] == pytest.approx(0.5)
    assert token_f1("x b c", "b c d") == pytest.approx(2 / 3)  # "a"/"the" would be dropped
    assert "fact_accuracy" not in generation_metrics(["x"], ["x"], [None])


# ---------------------------------------------------------------- the template travels with the model

def test_template_round_trip_prompt_equals_training_prefix(smol_tok, plain_tok, tmp_path):
    from tuneforge.models import loading as models

    for name, tok in (("smollm2", smol_tok), ("fallback", plain_tok)):
        task = make_task(tok, system="You are Brightkettle support.")
        msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Kettle-ho!"},
                {"role": "user", "content": "Price of the BK-500?"}, {"role": "assistant", "content": "€129."}]
        train = task.encode([rec(instruction="Wi-Fi band?", output="2.4 GHz."), rec(2, messages=msgs)])
        out = tmp_path / name
        task.tokenizer.save_pretrained(str(out))
        meta = json.loads(json.dumps(task.metadata()))
        # Inference: the tokenizer from the run directory, a config whose data keys changed since.
        tok2 = models.load_tokenizer(models.ModelSource("run", out))
        cfg = load_config(None, base={"name": "t", "task": "instruction", "data": {"train": "x", "system": "Other."}})
        again = InstructionTask.from_saved(cfg, tok2, meta)
        infer = again.encode_unlabelled([rec(instruction="Wi-Fi band?"), rec(2, messages=msgs[:3])])
        for t, i in zip(train, infer):
            first = next(k for k, lab in enumerate(t.labels) if lab != IGNORE)
            last_turn = len(t.prompt)
            assert i.prompt == t.prompt == t.ids[:last_turn], name
            assert first <= last_turn
        assert again.fmt == task.fmt and again.stop_ids == task.stop_ids


# ---------------------------------------------------------------- predict and chat on a tiny trained run

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, smol_tok, tiny_llama):
    """The real `tuneforge train` on a tiny Llama with the SmolLM2 tokenizer: a run directory in seconds."""
    from tuneforge.cli import main

    root = tmp_path_factory.mktemp("tiny-run")
    model_dir = root / "model"
    tiny_llama.save_pretrained(str(model_dir), safe_serialization=True)
    smol_tok.save_pretrained(str(model_dir))
    rows = [{"instruction": f"What is code E{i}?", "output": f"E{i} means reset.", "fact": f"E{i}"}
            for i in range(12)]
    for split, part in (("train", rows[:10]), ("test", rows[10:])):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    cfg = {"name": "tiny-chat", "task": "instruction", "model": str(model_dir), "output_dir": str(root / "runs"),
           "method": {"name": "lora", "r": 4, "alpha": 8},
           "data": {"train": str(root / "train.jsonl"), "test": str(root / "test.jsonl"), "validation": 0.2,
                    "max_length": 64},
           "privacy": {"pii": "off"}, "leakage": {"policy": "warn"}, "forgetting": {"reference": None},
           "eval": {"max_new_tokens": 4, "batch_size": 8},
           "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "threads": 1, "log_every": 1}}
    (root / "cfg.yaml").write_text(json.dumps(cfg), encoding="utf-8")
    assert main(["train", str(root / "cfg.yaml"), "--quiet"]) == 0
    return root / "runs" / "tiny-chat"


def test_tiny_run_writes_generation_metrics_and_template(tiny_run):
    ev = json.loads((tiny_run / "eval.json").read_text())
    for stage in ("base", "final"):
        assert {"rouge_l", "fact_accuracy", "perplexity", "samples"} <= set(ev[stage]["test"])
        assert "rouge_l" not in ev[stage].get("validation", {})
    meta = json.loads((tiny_run / "model" / "tuneforge.json").read_text())
    assert meta["formatting"]["chat_template"].startswith("{% for message in messages %}")


def test_predict_command_uses_the_saved_template(tiny_run, capsys):
    from tuneforge.cli import main

    assert main(["predict", str(tiny_run), "--prompt", "What is code E3?"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["prompt"] == "What is code E3?" and isinstance(row["response"], str)


def test_chat_command_streams_replies_and_keeps_history(tiny_run, monkeypatch, capsys):
    from tuneforge.recipes import chat

    seen = []
    real = chat.ChatSession.prompt_ids

    def spy(self):
        ids = real(self)
        seen.append(ids)
        return ids

    monkeypatch.setattr(chat.ChatSession, "prompt_ids", spy)
    monkeypatch.setattr("sys.stdin", io.StringIO("What is code E1?\nAnd E2?\n/exit\n"))
    assert chat.chat_command(tiny_run, max_new_tokens=3) == 0
    assert len(seen) == 2 and seen[1][:len(seen[0])] == seen[0]  # the second turn extends the first
    assert "assistant>" in capsys.readouterr().out
