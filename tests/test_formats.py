"""Data formats users already have: Alpaca (JSONL and a .json array), OpenAI messages (with tool turns),
ShareGPT conversations and plain text train the support-bot example to the same token ids; config paths
resolve against the config file; a run's own config.yaml re-runs; other tools' flat keys get a hint."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers_tiny import sentiment_rows, tiny_train_config, write_jsonl
from tuneforge.cli import main
from tuneforge.config import load_config
from tuneforge.errors import ConfigError
from tuneforge.recipes.train import prepare

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are Brightkettle's customer-support assistant."


@pytest.fixture(scope="module")
def smol_tokenizer():
    from tuneforge.models import loading

    return loading.load_tokenizer(loading.resolve("smollm2"))  # parsing the GGUF takes seconds: once


@pytest.fixture(autouse=True)
def _one_tokenizer(request, monkeypatch):
    """prepare() reads the real SmolLM2 tokenizer; these tests load it once and hand out copies."""
    if "tiny_bert_dir" in request.fixturenames:
        return
    import copy

    from tuneforge.models import loading

    tok = request.getfixturevalue("smol_tokenizer")
    monkeypatch.setattr(loading, "load_tokenizer", lambda src: copy.deepcopy(tok))


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    rows = [json.loads(line) for line in (ROOT / "examples/support-bot/train.jsonl").read_text().splitlines()[:12]]
    return [{"instruction": r["instruction"], "input": "", "output": r["output"]} for r in rows]


def _formats(pairs: list[dict], root: Path) -> dict[str, Path]:
    """The same conversations in each format a user may bring (system prompt in the data where it can be)."""
    root.mkdir(parents=True, exist_ok=True)
    chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p["instruction"]},
              {"role": "assistant", "content": p["output"]}] for p in pairs]
    who = {"system": "system", "user": "human", "assistant": "gpt"}
    out = {"alpaca-jsonl": write_jsonl(root / "alpaca.jsonl", pairs),
           "openai": write_jsonl(root / "openai.jsonl", [{"messages": c} for c in chats]),
           "sharegpt": write_jsonl(root / "sharegpt.jsonl", [{"conversations": [{"from": who[m["role"]],
                                                                              "value": m["content"]} for m in c]}
                                                            for c in chats])}
    (root / "alpaca.json").write_text(json.dumps(pairs, indent=2), encoding="utf-8")
    out["alpaca-json"] = root / "alpaca.json"
    return out


def _prepared(train: Path, **data):
    cfg = load_config(None, base={"name": "fmt", "task": "instruction", "model": "smollm2",
                                  "data": {"train": str(train), "validation": None, "max_length": 256, **data},
                                  "privacy": {"pii": "off"}, "leakage": {"policy": "warn"}})
    return prepare(cfg)


def test_five_formats_encode_to_the_same_ids(pairs, tmp_path):
    files = _formats(pairs, tmp_path)
    encoded = {}
    for name, path in files.items():
        prep = _prepared(path, **({} if name in ("openai", "sharegpt") else {"system": SYSTEM}))
        encoded[name] = [(e.ids, e.labels) for e in prep.encoded["train"]]
        layout = {"alpaca-jsonl": "(JSONL): 12 prompt/response pairs", "alpaca-json": "(JSON array): 12 prompt/resp",
                  "openai": "(JSONL): 12 OpenAI messages", "sharegpt": "(JSONL): 12 ShareGPT"}[name]
        assert any(layout in n for n in prep.task.notes), prep.task.notes  # detected per file, for the run log
    reference = encoded["alpaca-jsonl"]
    assert len(reference) == 12 and all(encoded[n] == reference for n in encoded), \
        [n for n in encoded if encoded[n] != reference]
    # plain text: the rendered conversation, every token trained (continued pre-training), plus eos
    prep = _prepared(files["openai"])
    rendered = [prep.task.render(c["messages"], False) for c in map(json.loads, files["openai"].read_text().splitlines())]
    text = _prepared(write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in rendered]))
    eos = text.tokenizer.eos_token_id
    for (ids, _), ex in zip(reference, text.encoded["train"]):
        assert ex.ids == ids + [eos] and all(lab == t for lab, t in zip(ex.labels[1:], ex.ids[1:]))


def test_tool_turns_in_openai_and_sharegpt_form(tmp_path):
    call = [{"type": "function", "function": {"name": "order_status", "arguments": "{\"id\": 42}"}}]
    openai = [{"role": "user", "content": "Where is order 42?"},
              {"role": "assistant", "content": None, "tool_calls": call},
              {"role": "tool", "tool_call_id": "c1", "content": "{\"status\": \"shipped\"}"},
              {"role": "assistant", "content": "Order 42 has shipped."}]
    share = [{"from": "human", "value": "Where is order 42?"},
             {"from": "function_call", "value": json.dumps(call)},
             {"from": "observation", "value": "{\"status\": \"shipped\"}"},
             {"from": "gpt", "value": "Order 42 has shipped."}]
    a = _prepared(write_jsonl(tmp_path / "o.jsonl", [{"messages": openai}] * 4))
    b = _prepared(write_jsonl(tmp_path / "s.jsonl", [{"conversations": share}] * 4))
    ex_a, ex_b = a.encoded["train"][0], b.encoded["train"][0]
    assert (ex_a.ids, ex_a.labels) == (ex_b.ids, ex_b.labels)
    tok = a.tokenizer
    trained = tok.decode([t for t, lab in zip(ex_a.ids, ex_a.labels) if lab != -100])
    assert "order_status" in trained and "Order 42 has shipped." in trained  # both assistant turns train
    assert "shipped\"}" not in trained  # the tool's answer is input, not a target
    assert "<|im_start|>tool" in tok.decode(ex_a.ids)


def test_sharegpt_with_an_unknown_speaker_names_the_line(tmp_path):
    bad = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "narrator", "value": "x"}]}])
    from tuneforge.errors import DataError

    with pytest.raises(DataError, match=r"s.jsonl:1: message 0 is from 'narrator'"):
        _prepared(bad)


# ---------------------------------------------------------------- config paths, re-runs, other tools' keys

def test_example_config_works_from_any_directory(tmp_path, monkeypatch):
    for cwd in (ROOT, tmp_path):
        monkeypatch.chdir(cwd)
        cfg = load_config(ROOT / "examples" / "sentiment.yaml" if cwd != ROOT else "examples/sentiment.yaml")
        assert Path(cfg.data.train).resolve() == ROOT / "examples/sentiment/train.jsonl"
        assert Path(cfg.data.test).is_file()
    monkeypatch.chdir(ROOT)
    assert load_config("examples/sentiment.yaml").data.train == "examples/sentiment/train.jsonl"  # tidy, as before


def test_config_relative_paths_win_and_cwd_paths_still_work(tmp_path, monkeypatch):
    (tmp_path / "proj" / "data").mkdir(parents=True)
    write_jsonl(tmp_path / "proj" / "data" / "t.jsonl", sentiment_rows(3))
    write_jsonl(tmp_path / "old.jsonl", sentiment_rows(3))
    cfg_file = tmp_path / "proj" / "c.yaml"
    cfg_file.write_text("name: s\ndata: {train: data/t.jsonl, test: old.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file)
    assert Path(cfg.data.train).resolve() == tmp_path / "proj" / "data" / "t.jsonl"  # beside the config
    assert Path(cfg.data.test).resolve() == tmp_path / "old.jsonl"  # only under the working directory
    assert load_config(cfg_file, ["data.test=proj/data/t.jsonl"]).data.test == "proj/data/t.jsonl"  # CLI: cwd


def test_a_runs_config_yaml_reruns_as_is_from_elsewhere(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    data = write_jsonl(tmp_path / "proj" / "train.jsonl", sentiment_rows(24))
    raw = tiny_train_config(tiny_bert_dir, data, tmp_path / "proj" / "runs", name="again", epochs=1)
    raw["output_dir"] = "runs"
    (tmp_path / "proj" / "c.yaml").write_text(json.dumps({**raw, "data": {**raw["data"], "train": "train.jsonl"}}))
    monkeypatch.chdir(tmp_path / "proj")
    assert main(["train", "c.yaml", "--quiet"]) == 0
    saved = (tmp_path / "proj" / "runs" / "again" / "config.yaml").read_text()
    assert "_provenance" in saved and "train: ../../train.jsonl" in saved  # relative to the run itself
    shutil.copytree(tmp_path / "proj", tmp_path / "moved")  # the project moves; its runs keep working
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["train", "moved/runs/again/config.yaml", "--quiet", "output_dir=elsewhere"]) == 0, capsys.readouterr()
    first = json.loads((tmp_path / "proj/runs/again/eval.json").read_text())["final"]["validation"]
    again = json.loads((tmp_path / "elsewhere/again/eval.json").read_text())["final"]["validation"]
    assert again["accuracy"] == first["accuracy"] and abs(again["loss"] - first["loss"]) < 1e-6
    assert main(["eval", "moved/runs/again", "--data", "moved/train.jsonl", "--json"]) == 0


@pytest.mark.parametrize("key, value, home", [
    ("learning_rate", 1e-4, "train.lr"), ("num_epochs", 2, "train.epochs"), ("num_train_epochs", 2, "train.epochs"),
    ("lora_r", 8, "method.r"), ("lora_alpha", 16, "method.alpha"), ("micro_batch_size", 4, "train.batch_size"),
    ("per_device_train_batch_size", 4, "train.batch_size"), ("gradient_accumulation_steps", 2, "train.grad_accum"),
    ("max_seq_length", 512, "data.max_length"), ("cutoff_len", 512, "data.max_length")])
def test_flat_keys_of_other_tools_get_a_hint(tmp_path, key, value, home):
    path = tmp_path / "c.yaml"
    path.write_text(f"name: s\ndata: {{train: t.jsonl}}\n{key}: {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"unknown key `{key}`; did you mean `{home}`?"]  # never silently accepted
    section = "train" if home.startswith("method.") else "method"  # in another section, too
    with pytest.raises(ConfigError) as info:
        load_config(None, base={"name": "s", "data": {"train": "t.jsonl"}, section: {key: value}})
    assert info.value.problems == [f"unknown key `{section}.{key}`; did you mean `{home}`?"]
