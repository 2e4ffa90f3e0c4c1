"""The Python API: `tuneforge.load(run)` is a typed object that loads the model once and answers what the
CLI answers; the top-level functions are documented, typed, and the package ships py.typed."""
from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest

import tuneforge
from tuneforge.config import load_config
from tuneforge.errors import TuneforgeError
from tuneforge.recipes import inference
from tuneforge.recipes.inference import Classification, Evaluation, Reply, TunedModel, evaluate_run, predict_run

TEXTS = ["great love it, excellent", "awful broken refund", "it arrived, okay"]
PROMPTS = ["What is code E3?", "Hello there"]


def test_load_keeps_one_model_and_predicts_what_predict_prints(shipped_runs, monkeypatch, tmp_path):
    loads = []
    real = inference.load_run
    monkeypatch.setattr(inference, "load_run", lambda run: loads.append(run) or real(run))
    cls = tuneforge.load(shipped_runs["cls"])
    assert isinstance(cls, TunedModel) and not cls.generates and cls.labels == ["negative", "neutral", "positive"]
    got = cls.predict(TEXTS) + cls.classify(TEXTS[0])
    test_file = load_config(Path(shipped_runs["cls"]) / "config.yaml").data.train
    scores = cls.evaluate(test_file)
    assert len(loads) == 1  # three calls, one load
    monkeypatch.setattr(inference, "load_run", real)
    ours = predict_run(shipped_runs["cls"], texts=TEXTS)
    assert all(isinstance(c, Classification) for c in got)
    assert [(c.text, c.label, c.probs) for c in got[:3]] == [(t, r["label"], r["probs"]) for t, r in zip(TEXTS, ours)]
    assert got[3] == got[0]
    assert isinstance(scores, Evaluation) and scores["accuracy"] == evaluate_run(shipped_runs["cls"],
                                                                                 test_file)["accuracy"]
    with pytest.raises(TuneforgeError, match="use classify"):
        cls.generate("hi")


def test_load_generates_typed_replies_like_predict(shipped_runs):
    bot = tuneforge.load(shipped_runs["lm"])
    assert bot.generates and bot.labels == []
    replies = bot.predict(PROMPTS)
    assert all(isinstance(r, Reply) for r in replies)
    assert [r.text for r in replies] == [r["response"] for r in predict_run(shipped_runs["lm"], texts=PROMPTS)]
    one = bot.generate(PROMPTS[0])
    assert one == replies[0] and one.prompt_tokens > 0 and one.finish_reason in ("stop", "length")
    # a conversation in OpenAI's messages, and the stream that joins to the same reply
    assert bot.generate([{"role": "user", "content": PROMPTS[0]}]).text == one.text
    pieces = list(bot.stream(PROMPTS[0]))
    assert isinstance(pieces[-1], Reply) and "".join(pieces[:-1]) == pieces[-1].text == one.text
    assert bot.generate(PROMPTS[0], max_new_tokens=1).completion_tokens <= 1
    with pytest.raises(TuneforgeError, match="use generate"):
        bot.classify("hi")


def test_top_level_functions_are_documented_and_typed():
    assert set(tuneforge.__all__) >= {"train", "load", "evaluate", "predict", "scan", "export", "compare"}
    for name in tuneforge.__all__:
        if name == "__version__":
            continue
        fn = getattr(tuneforge, name)
        assert inspect.getdoc(fn) and len(inspect.getdoc(fn)) > 40, name
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name
    for cls in (Classification, Reply, Evaluation):
        assert dataclasses.is_dataclass(cls) and cls.__doc__
    assert (Path(tuneforge.__file__).parent / "py.typed").is_file()


def test_export_through_the_api_returns_a_typed_result(shipped_runs, tmp_path):
    from tuneforge.recipes.export import ExportResult

    out = tuneforge.export(shipped_runs["cls"], tmp_path / "merged", merge=True, dtype="bf16")
    assert isinstance(out, ExportResult) and out.merged and out.dtype == "bf16" and out.bytes > 0
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["id2label"]["0"] == "negative"
