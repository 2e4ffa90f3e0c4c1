"""The evaluation a user reads (issue 22): eval.json's intervals, baselines, paired tests, slices and calibration
on tiny real runs; report.html (every section, no empty column, offline); `tuneforge report` for one and several
runs; TensorBoard's hparams, text and PR curves; and the page rendered in headless Chromium (skipped without)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers_tiny import make_tiny_bert, make_tiny_llama, sentiment_rows, tiny_train_config, write_config, write_jsonl

CLASSIFICATION_SECTIONS = ["verdict", "metrics", "per-class", "confusion", "slices", "calibration", "examples",
                           "curves", "diagnosis", "training", "audit", "notes"]
INSTRUCTION_SECTIONS = ["verdict", "metrics", "slices", "examples", "curves", "diagnosis", "training", "audit",
                        "notes"]


def _train(config: dict[str, Any], path: Path) -> Path:
    from tuneforge.cli import main

    assert main(["train", str(write_config(path, **config)), "--quiet"]) == 0
    return Path(config["output_dir"]) / config["name"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny classification runs (lr 3e-3 and 1e-4) on the same data, and one tiny instruction run."""
    root = tmp_path_factory.mktemp("report")
    bert = make_tiny_bert(root / "bert")
    rows = sentiment_rows(120, 0)
    for i, r in enumerate(rows):
        r["shop"] = ["north", "south"][i % 2]
    train = write_jsonl(root / "train.jsonl", rows)
    test = write_jsonl(root / "test.jsonl", [dict(r, shop="east") for r in sentiment_rows(60, 1)])
    out = {}
    for name, lr, epochs in (("good", 3e-3, 3), ("slow", 1e-4, 1)):
        cfg = tiny_train_config(bert, train, root / "runs", name=name, lr=lr, epochs=epochs, batch_size=8)
        cfg["data"]["test"] = str(test)
        cfg["eval"] = {"base": True, "batch_size": 32, "calibrate": True, "slices": ["shop"], "bootstrap": 300}
        out[name] = _train(cfg, root / f"{name}.yaml")
    llama = make_tiny_llama(root / "llama")
    qa = [{"instruction": f"What does code E{i} mean{' on my new kettle at home' * (i % 3)}?",
           "output": f"E{i} means reset the kettle.", "fact": f"E{i}"} for i in range(16)]
    cfg = {"name": "chat", "task": "instruction", "model": str(llama), "output_dir": str(root / "runs"),
           "method": {"name": "lora", "r": 4, "alpha": 8},
           "data": {"train": str(write_jsonl(root / "qa.jsonl", qa[:10])),
                    "test": str(write_jsonl(root / "qa_test.jsonl", qa[10:])), "validation": 0.2, "max_length": 64},
           "privacy": {"pii": "off"}, "leakage": {"policy": "warn"}, "forgetting": {"reference": None},
           "eval": {"max_new_tokens": 6, "batch_size": 8, "bootstrap": 200},
           "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "threads": 1, "log_every": 1}}
    out["chat"] = _train(cfg, root / "chat.yaml")
    return out


def _eval(run: Path) -> dict[str, Any]:
    return json.loads((run / "eval.json").read_text())


def test_eval_json_has_intervals_baselines_paired_tests_slices_and_calibration(runs) -> None:
    ev = _eval(runs["good"])
    for stage in ("base", "final"):
        ci = ev[stage]["test"]["ci"]
        assert set(ci) == {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
        assert all(lo - 1e-4 <= ev[stage]["test"][k] <= hi + 1e-4 for k, (lo, hi) in ci.items())
    assert set(ev["baselines"]) == {"majority class", "linear probe (96 train)"}
    assert ev["baselines"]["majority class"]["test"]["accuracy"] == pytest.approx(1 / 3, abs=1e-3)
    assert ev["baselines"]["majority class"]["test"]["n"] == 60
    comps = {c["a"]: c for c in ev["comparisons"]["test"]}
    assert set(comps) == {"base", "majority class", "linear probe (96 train)"}
    m = comps["base"]["mcnemar"]
    correct = round(ev["final"]["test"]["accuracy"] * 60) - round(ev["base"]["test"]["accuracy"] * 60)
    assert m["only_b"] - m["only_a"] == correct and 0 <= m["p"] <= 1
    slicings = {e["slice"] for e in ev["slices"]["test"]["slices"]}
    assert {"true label", "input length"} <= slicings and "shop" not in slicings  # the test set has one shop
    by_label = [e for e in ev["slices"]["test"]["slices"] if e["slice"] == "true label"]
    assert by_label and all(set(e["metrics"]) == {"accuracy"} for e in by_label)  # no macro over one class
    cal = ev["calibration"]["test"]
    assert cal["calibrated"]["temperature"] > 0 and "fitted on 24 validation examples" in cal["note"]
    assert ev["diagnosis"]["summary"] and ev["date"] and ev["run"] == "good"
    preds = (runs["good"] / "predictions" / "test.jsonl").read_text().splitlines()
    assert len(preds) == 60 and {"where", "text", "label", "predicted", "logits"} <= set(json.loads(preds[0]))


def test_predict_applies_the_fitted_temperature(runs) -> None:
    """eval.calibrate: predict (and anything that loads the run through recipes/inference.py) divides the logits
    by the temperature fitted on validation."""
    from tuneforge.recipes.inference import load_run, predict_run

    t = _eval(runs["good"])["calibration"]["test"]["calibrated"]["temperature"]
    assert load_run(runs["good"]).task.temperature == t
    rows = [json.loads(x) for x in (runs["good"] / "predictions" / "test.jsonl").read_text().splitlines()[:5]]
    got = predict_run(runs["good"], texts=[r["text"] for r in rows])
    for r, g in zip(rows, got):
        z = [v / t for v in r["logits"]]
        exp = [math.exp(v - max(z)) for v in z]
        want = [e / sum(exp) for e in exp]
        assert list(g["probs"].values()) == pytest.approx(want, abs=2e-3)
        assert g["label"] == r["predicted"]


class Tables(HTMLParser):
    """Every table's cells, every section id, and every external reference of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.sections: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        for key in ("src", "href"):
            if (a.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(a[key] or "")
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None


def parse(page: str) -> Tables:
    p = Tables()
    p.feed(page)
    return p


def assert_readable(page: str, sections: list[str]) -> Tables:
    p = parse(page)
    assert [s for s in sections if s not in p.sections] == [], p.sections
    assert not p.external, p.external
    assert "<style>" in page and "@import" not in page and "url(" not in page.split("</style>")[0]
    for t in p.tables:
        body = [r for r in t[1:] if r] if t and t[0] and any(t[0]) else t
        width = max(len(r) for r in t)
        for j in range(width):
            assert any(j < len(r) and r[j] for r in body), f"empty column {j} in {t[:2]}"
    return p


def test_classification_report_has_every_section_and_no_empty_column(runs) -> None:
    page = (runs["good"] / "report.html").read_text()
    p = assert_readable(page, CLASSIFICATION_SECTIONS)
    assert "forgetting" not in p.sections  # nothing to show: left out
    assert "privacy" in p.sections and "no differential-privacy guarantee" in page  # said plainly
    assert "membership inference" in page and "ROC AUC" in page
    metrics = p.tables[1]  # [0] is the header's data table
    assert [r[0] for r in metrics[1:]] == ["base (before fine-tuning)", "majority class (baseline)",
                                           "linear probe (96 train) (baseline)", "fine-tuned (full)"]
    assert "McNemar" in page and "95% CI" in page and "base predicted" in page
    assert "exact_match" not in page  # the instruction columns never show on a classifier


def test_instruction_report_shows_generations_beside_the_base_models(runs) -> None:
    page = (runs["chat"] / "report.html").read_text()
    p = assert_readable(page, INSTRUCTION_SECTIONS)
    assert "confusion" not in p.sections and "calibration" not in p.sections and "per-class" not in p.sections
    assert "base generated" in page and "paired bootstrap" in page and "rouge_l" in page
    ev = _eval(runs["chat"])
    assert set(ev["final"]["test"]["ci"]) >= {"rouge_l", "token_f1", "perplexity"}


def test_report_command_regenerates_and_compares(runs, tmp_path, capsys) -> None:
    from tuneforge.cli import main

    (runs["good"] / "report.html").unlink()
    out = tmp_path / "cmp.html"
    assert main(["report", str(runs["good"]), str(runs["slow"]), "--out", str(out)]) == 0
    assert (runs["good"] / "report.html").is_file()  # each run's page rebuilt, then the comparison
    page = out.read_text()
    p = assert_readable(page, ["runs", "metrics", "paired", "settings", "curves", "verdicts"])
    assert "train.lr" in page and "shared examples" in page
    paired = next(t for t in p.tables if t[0][:2] == ["run", "shared examples"])
    assert paired[1][0] == "slow" and paired[1][1] == "60"
    assert main(["report", str(runs["good"]), str(runs["chat"])]) == 2
    assert "different tasks" in capsys.readouterr().err


def test_report_of_an_unfinished_run_is_one_error_line(runs, tmp_path, capsys) -> None:
    from tuneforge.cli import main

    half = tmp_path / "half"
    shutil.copytree(runs["slow"], half)
    (half / "eval.json").unlink()
    assert main(["report", str(half)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--resume" in err[0]


def test_tensorboard_has_hparams_config_samples_and_pr_curves(runs) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(runs["good"] / "tb"), size_guidance={"tensors": 0})
    ea.Reload()
    tags = ea.Tags()
    assert {"train/loss", "train/learning_rate", "eval/loss", "eval/accuracy", "test/accuracy"} <= set(tags["scalars"])
    assert {"config/text_summary", "errors/final_test/text_summary"} <= set(tags["tensors"])
    assert {f"pr/{c}" for c in ("negative", "neutral", "positive")} <= set(tags["tensors"])
    assert "_hparams_/session_start_info" in ea.PluginTagToContent("hparams")
    chat = EventAccumulator(str(runs["chat"] / "tb"), size_guidance={"tensors": 0})
    chat.Reload()
    assert "samples/final_test/text_summary" in chat.Tags()["tensors"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install -y chromium)")
@pytest.mark.parametrize("name,sections", [("good", CLASSIFICATION_SECTIONS), ("chat", INSTRUCTION_SECTIONS)])
def test_report_renders_offline_in_headless_chromium(runs, tmp_path, name, sections) -> None:
    """The page as a browser sees it, with the network cut off: it loads, shows every section, and the
    screenshot is a real page (not a blank one)."""
    url = (runs[name] / "report.html").resolve().as_uri()
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--window-size=1280,2400"]
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert_readable(dom, sections)
    png = tmp_path / "page.png"
    subprocess.run(flags + [f"--screenshot={png}", url], capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(png).convert("L")
    assert img.size == (1280, 2400)
    light = sum(1 for v in img.getdata() if v > 245) / (1280 * 2400)
    assert 0.3 < light < 0.99, light  # mostly white page with content on it


def test_eval_command_prints_intervals(runs, capsys) -> None:
    from tuneforge.cli import main

    data = _eval(runs["good"])["data"]["test"]["file"]
    assert main(["eval", str(runs["good"]), "--data", data]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "95% CI" in out


def test_a_report_from_before_this_evaluation_still_renders(runs, tmp_path) -> None:
    """An older run: eval.json without intervals, baselines, slices or calibration, no predictions/."""
    from tuneforge.evaluation.report import regenerate

    old = tmp_path / "old"
    shutil.copytree(runs["slow"], old)
    shutil.rmtree(old / "predictions")
    ev = _eval(old)
    for key in ("baselines", "comparisons", "slices", "calibration", "date", "run", "data"):
        ev.pop(key, None)
    for stage in ("base", "final"):
        for m in ev[stage].values():
            m.pop("ci", None)
            m.pop("errors", None)
    ev["diagnosis"].pop("summary")
    (old / "eval.json").write_text(json.dumps(ev))
    page = regenerate(old).read_text()
    assert_readable(page, ["verdict", "metrics", "per-class", "confusion", "curves", "diagnosis", "training"])


def test_an_unknown_slice_column_is_one_error_line_before_anything_is_written(runs, tmp_path, capsys) -> None:
    from tuneforge.cli import main

    cfg = tiny_train_config(make_tiny_bert(tmp_path / "bert"), write_jsonl(tmp_path / "t.jsonl", sentiment_rows(30)),
                            tmp_path / "runs", name="bad")
    cfg["eval"] = {"slices": ["region"]}
    assert main(["train", str(write_config(tmp_path / "bad.yaml", **cfg))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: `eval.slices`: column 'region' is in no record")
    assert not (tmp_path / "runs" / "bad").exists()
