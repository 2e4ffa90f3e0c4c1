"""model/ is portable: copied elsewhere, it loads with plain PEFT and transformers (tuneforge not even
imported) and predicts what `tuneforge predict` predicts, with real label names; the base is named by a
stable name + revision in adapter_config.json, and a model card says what the model is."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_tiny import SHIPPED_SYSTEM as SYSTEM
from tuneforge.config import load_config
from tuneforge.recipes.inference import predict_run

TEXTS = ["great love it, excellent", "awful broken refund", "it arrived, okay"]
PROMPTS = ["What is code E3?", "Hello there"]

PLAIN = r'''
import json, sys
from peft import AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification
from transformers import AutoTokenizer, GenerationConfig, pipeline
cls_dir, lm_dir, texts, prompts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
out = {}
model = AutoPeftModelForSequenceClassification.from_pretrained(cls_dir).eval()
tok = AutoTokenizer.from_pretrained(cls_dir)
probs = model(**tok(texts, return_tensors="pt", padding=True)).logits.softmax(-1).tolist()
out["peft"] = [{model.config.id2label[i]: p for i, p in enumerate(row)} for row in probs]
out["pipeline"] = [{d["label"]: d["score"] for d in row} for row in pipeline("text-classification", model=cls_dir)(texts, top_k=None)]
model = AutoPeftModelForCausalLM.from_pretrained(lm_dir).eval()
tok, gen = AutoTokenizer.from_pretrained(lm_dir), GenerationConfig.from_pretrained(lm_dir)
replies = []
for q in prompts:
    ids = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    replies.append(tok.decode(model.generate(**ids, generation_config=gen)[0, ids["input_ids"].shape[1]:],
                              skip_special_tokens=True).strip())
out["generate"] = replies
pipe = pipeline("text-generation", model=lm_dir)
out["chat_pipeline"] = [pipe([{"role": "user", "content": q}])[0]["generated_text"][-1]["content"].strip() for q in prompts]
out["tuneforge_imported"] = any(m.startswith("tuneforge") for m in sys.modules)
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def runs(shipped_runs) -> dict[str, Path]:
    return shipped_runs


def test_copied_model_dirs_load_in_plain_peft_and_transformers(runs, tmp_path):
    copies = {k: shutil.copytree(run / "model", tmp_path / "elsewhere" / k) for k, run in runs.items()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the base resolves from the cache; never a network call
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(copies["cls"]), str(copies["lm"]), json.dumps(TEXTS),
                           json.dumps(PROMPTS)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    got = json.loads(line[len("RESULT "):])
    assert got["tuneforge_imported"] is False
    ours = predict_run(runs["cls"], texts=TEXTS)
    for how in ("peft", "pipeline"):
        for row, mine in zip(got[how], ours):
            assert set(row) == {"negative", "neutral", "positive"}  # real names, not LABEL_0
            assert max(row, key=row.get) == mine["label"]
            assert all(abs(row[k] - mine["probs"][k]) < 1e-4 for k in row), (how, row, mine)
    replies = [r["response"] for r in predict_run(runs["lm"], texts=PROMPTS)]
    assert any(replies) and got["generate"] == replies and got["chat_pipeline"] == replies


def test_adapter_config_names_a_stable_base_and_each_head_once(runs):
    for run in runs.values():
        config = json.loads((run / "model" / "adapter_config.json").read_text())
        meta = json.loads((run / "model" / "tuneforge.json").read_text())
        assert config["base_model_name_or_path"] == meta["base"]["name"] and config["base_model_name_or_path"] \
            .startswith("tuneforge/") and len(config["revision"]) == 40
        assert not os.path.isabs(meta["base"]["source"])  # the user's model dir: relative to the run
        saved = config.get("modules_to_save") or []
        assert len(saved) == len(set(saved))
    assert "classifier" in json.loads((runs["cls"] / "model" / "adapter_config.json").read_text())["modules_to_save"]
    lm = runs["lm"] / "model"
    gen = json.loads((lm / "generation_config.json").read_text())
    assert gen["max_new_tokens"] == 8 and gen["do_sample"] is False and gen["eos_token_id"]
    from transformers import AutoTokenizer

    rendered = AutoTokenizer.from_pretrained(str(lm)).apply_chat_template([{"role": "user", "content": "hi"}],
                                                                          tokenize=False, add_generation_prompt=True)
    assert SYSTEM in rendered and "SmolLM" not in rendered  # the run's system prompt, not the model's default


def test_model_card_has_metadata_and_every_section(runs):
    import yaml

    card = (runs["cls"] / "model" / "README.md").read_text()
    assert "[More Information Needed]" not in card
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert meta["model-index"][0]["results"][0]["metrics"]
    for heading in ("## Intended use", "## Base model", "## Method", "## Training data", "## Data vetting",
                    "## Hyperparameters", "## Results", "## Diagnosis and forgetting", "## How to load it"):
        assert heading in card
    assert "AutoPeftModelForSequenceClassification" in card and "pipeline(" in card and "vLLM" in card
    data = Path(load_config(runs["cls"] / "config.yaml").data.train)
    assert hashlib.sha256(data.read_bytes()).hexdigest()[:16] in card and f"{data.stat().st_size:,}" in card
