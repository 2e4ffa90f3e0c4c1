"""`tuneforge export RUN --merge`: plain transformers loads the result and it predicts like the run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers_tiny import make_tiny_llama, sentiment_rows, tiny_train_config, write_jsonl
from tuneforge.cli import main
from tuneforge.config import MethodConfig, load_config
from tuneforge.methods import get_method
from tuneforge.recipes.inference import load_run
from tuneforge.recipes.train import train

TEXTS = ["great love it", "awful broken refund", "it arrived, okay"]


@pytest.fixture(scope="module")
def runs(tiny_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """One tiny finished run per method (1 epoch: merging must work on any trained state)."""
    root = tmp_path_factory.mktemp("export-runs")
    data = write_jsonl(root / "train.jsonl", sentiment_rows(30))
    out = {}
    for method in ("lora", "dora", "qlora", "adapter", "freeze"):
        raw = tiny_train_config(tiny_bert_dir, data, root / "runs", name=method, epochs=1, lr=5e-3)
        raw["method"] = {"name": method, "layers": 1, "r": 4}
        out[method] = train(load_config(None, base=raw), quiet=True).run_dir
    return out


def run_logits(run_dir: Path) -> torch.Tensor:
    _, task, model = load_run(run_dir)
    batch = task.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.to("cpu").eval()(**batch).logits.float()


@pytest.mark.parametrize("method", ["lora", "dora", "qlora", "freeze"])
def test_merged_export_loads_in_plain_transformers_and_predicts_the_same(runs, method, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "merged"
    assert main(["export", str(runs[method]), "--merge", "--out", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        got = model(**tok(TEXTS, return_tensors="pt", padding=True)).logits
    torch.testing.assert_close(got, run_logits(runs[method]), rtol=0, atol=1e-5)
    assert model.config.id2label[0] == "negative"
    assert not any("lora" in type(m).__name__.lower() or type(m).__name__ == "Linear4bit" for m in model.modules())


def test_adapter_merge_is_refused_clearly_and_plain_export_copies(runs, tmp_path, capsys):
    assert main(["export", str(runs["adapter"]), "--merge", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bottleneck adapters cannot be merged") and "GELU" in err
    assert not (tmp_path / "m").exists()
    assert main(["export", str(runs["adapter"]), "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "plain" / "tuneforge_export.json").read_text())["merged"] is False


def test_export_refuses_to_overwrite_a_foreign_directory(runs, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["export", str(runs["lora"]), "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").exists()


@pytest.mark.parametrize("name", ["lora", "qlora"])
def test_causal_lm_merge_loads_with_auto_model_for_causal_lm(tmp_path, minilm_tokenizer, name):
    from transformers import AutoModelForCausalLM

    from tuneforge.models import loading as models

    torch.manual_seed(0)
    base_dir = make_tiny_llama(tmp_path / "llama")
    method = get_method(name)
    model = method.apply(models.load_causal_lm(models.ModelSource("t", base_dir)),
                         MethodConfig(name=name, r=4, dropout=0.0), "instruction")
    batch = dict(minilm_tokenizer(TEXTS, return_tensors="pt", padding=True))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(**batch, labels=batch["input_ids"]).loss.backward()
        opt.step(), opt.zero_grad()
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        method.merge(model).save_pretrained(str(tmp_path / "out"))
        got = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- dtypes, GGUF, Ollama (issue 17)

def test_bf16_merged_export_is_half_the_size_and_predicts_the_same_labels(shipped_runs, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run = shipped_runs["cls"]
    sizes, labels = {}, {}
    for dtype in ("fp32", "bf16"):
        out = tmp_path / dtype
        assert main(["export", str(run), "--merge", "--dtype", dtype, "--out", str(out)]) == 0
        sizes[dtype] = (out / "model.safetensors").stat().st_size
        model = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
        assert model.dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)
        tok = AutoTokenizer.from_pretrained(str(out))
        with torch.no_grad():
            labels[dtype] = [model.config.id2label[int(i)] for i in
                             model(**tok(TEXTS, return_tensors="pt", padding=True)).logits.argmax(-1)]
        card = (out / "README.md").read_text()
        assert f"merged, {dtype}" in card and "library_name: transformers" in card
    assert 0.45 < sizes["bf16"] / sizes["fp32"] < 0.55, sizes
    from tuneforge.recipes.inference import predict_run

    assert labels["bf16"] == labels["fp32"] == [r["label"] for r in predict_run(run, texts=TEXTS)]
    assert main(["export", str(run), "--dtype", "bf16", "--out", str(tmp_path / "x")]) == 2  # needs --merge
    assert "needs --merge" in capsys.readouterr().err


def test_gguf_export_round_trips_and_ollama_modelfile_carries_the_template(shipped_runs, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers_tiny import SHIPPED_SYSTEM
    from tuneforge.evaluation.generation import greedy
    from tuneforge.recipes import gguf
    from tuneforge.recipes.inference import TunedModel

    out = tmp_path / "gguf"
    assert main(["export", str(shipped_runs["lm"]), "--format", "gguf", "--out", str(out)]) == 0
    assert "answers 5 prompts with the run's greedy text" in capsys.readouterr().out  # verified by the export
    path = out / "lm-fp32.gguf"
    run = TunedModel(shipped_runs["lm"])
    tok = AutoTokenizer.from_pretrained(str(out), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=path.name, torch_dtype=torch.float32).eval()
    for prompt in gguf.PROBES:  # checked again here, independently of the export's own check
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert list(ids) == run.task.prompt_ids([{"role": "user", "content": prompt}])
        (new,) = greedy(model, [list(ids)], 8, torch.device("cpu"), None, run.task.stop_ids[0], run.task.stop_ids)
        assert run.task.decode_reply(new) == run.generate(prompt).text
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{path.name}\n") and f'SYSTEM """{SHIPPED_SYSTEM}"""' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    template = modelfile.split('TEMPLATE """')[1].split('"""')[0]
    # Ollama's Go template, filled in as Ollama fills it, renders what the training template renders
    filled = (template.replace("{{ if .System }}", "").split("{{ else }}")[0]
              + template.split("{{ end }}", 1)[1]).replace("{{ .System }}", SHIPPED_SYSTEM) \
        .replace("{{ .Prompt }}", "Hi").replace("{{ .Response }}", "Hello.")
    assert filled == run.task.render([{"role": "system", "content": SHIPPED_SYSTEM}, {"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello."}], False)


def test_gguf_export_refuses_a_classifier_in_one_line(shipped_runs, tmp_path, capsys):
    assert main(["export", str(shipped_runs["cls"]), "--format", "gguf", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: GGUF export is for instruction runs") and err.count("\n") == 1
    assert not (tmp_path / "g").exists()


def test_a_gguf_model_is_dequantized_once_and_then_loads_the_same_from_the_cache(shipped_runs, tmp_path, monkeypatch):
    """ggufcache.py: the first load de-quantizes the GGUF and stores weights, config and tokenizer; the next
    loads read that entry (bitwise the same weights, the same token ids and chat prompt); an entry that does
    not read is removed and rebuilt from the GGUF."""
    from huggingface_hub import constants

    from tuneforge.models import ggufcache, loading

    out = tmp_path / "gguf"
    assert main(["export", str(shipped_runs["lm"]), "--format", "gguf", "--out", str(out)]) == 0
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    src = loading.resolve(str(out / "lm-fp32.gguf"))
    assert src.gguf_file and ggufcache.plain(src) is None

    def load() -> tuple[dict, list, list]:
        tok = loading.load_tokenizer(src)
        model = loading.load_causal_lm(src)
        chat = tok.apply_chat_template([{"role": "user", "content": "Warranty?"}], add_generation_prompt=True)
        return model.state_dict(), tok("the kettle, €129 — D-42")["input_ids"], list(chat)

    first = load()
    cached = ggufcache.plain(src)
    assert cached is not None and (cached.path / "model.safetensors").is_file()
    second = load()  # from the entry
    (out / "lm-fp32.gguf").rename(out / "away.gguf")  # the GGUF gone: this load can only read the entry
    monkeypatch.setattr(ggufcache, "key", lambda s: cached.path.name)  # (the key hashes the GGUF file)
    third = load()
    (out / "away.gguf").rename(out / "lm-fp32.gguf")
    for other in (second, third):
        assert other[1:] == first[1:]
        assert first[0].keys() == other[0].keys()
        assert all(torch.equal(first[0][k], other[0][k]) for k in first[0])
    with open(cached.path / "model.safetensors", "r+b") as f:  # a truncated entry: rebuilt from the GGUF
        f.truncate(1000)
    rebuilt = load()
    assert all(torch.equal(first[0][k], rebuilt[0][k]) for k in first[0])
    assert (cached.path / "model.safetensors").stat().st_size > 1000
    (tmp_path / "not-a-dir").write_text("x")  # a cache that cannot be written: loads still work, uncached
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "not-a-dir"))
    assert load()[1:] == first[1:] and ggufcache.plain(src) is None
