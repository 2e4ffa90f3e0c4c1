"""The preference task: DPO, IPO, ORPO and KTO against TRL's trainers on one batch (to 1e-5), the invariants
(policy = reference: DPO loss log 2, margins 0; the adapters-off reference = a separately loaded base), data and
config errors, the diagnosis of preference curves, the per-pair rows (their tally gives evaluate's metrics), and
a tiny end-to-end run that learns to prefer the chosen answers (continuing an instruction run with init_from)
whose eval.json has intervals, the paired test against the base, slices, predictions and the audit.

Models are a tiny random Llama (tests/helpers_tiny.py); TRL is a test-only dependency (the `dev` extra).
"""
from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import pytest
import torch

from helpers_tiny import make_tiny_llama, write_config, write_jsonl
from tuneforge.config import load_config
from tuneforge.data.records import Record
from tuneforge.errors import ConfigError, DataError, TuneforgeError
from tuneforge.methods import get_method
from tuneforge.models import loading
from tuneforge.tasks.preference.reference import Reference, frozen
from tuneforge.tasks.preference.task import PreferenceTask

CPU = torch.device("cpu")
PAIRS = [("what is the warranty on the kettle", "two years on every kettle", "no warranty at all sorry"),
         ("how long does shipping take", "three to five days", "it ships whenever we feel like it maybe"),
         ("which app do i need", "the brightkettle app", "any app"),
         ("can i return it", "yes within forty five days of delivery", "no")]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("pref-llama"))


def load_llama(model_dir: Path, seed: int | None = None) -> torch.nn.Module:
    """The tiny Llama; with `seed`, its weights nudged (a policy that is not its reference)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def make_task(model_dir: Path, objective: str = "dpo", train: dict | None = None, **data) -> PreferenceTask:
    cfg = load_config(None, base={"name": "p", "task": "preference", "model": str(model_dir),
                                  "data": {"train": "x.jsonl", "prompt": "prompt", "max_length": 48, **data},
                                  "train": {"objective": objective, "beta": 0.2, "orpo_lambda": 0.3,
                                            "desirable_weight": 1.0, "undesirable_weight": 1.5, **(train or {})}})
    return PreferenceTask.from_config(cfg, loading.load_tokenizer(loading.resolve(str(model_dir))))


def pair_records() -> list[Record]:
    return [Record({"prompt": p, "chosen": c, "rejected": r}, "prefs.jsonl", i + 1) for i, (p, c, r) in enumerate(PAIRS)]


def kto_records() -> list[Record]:
    rows = [(p, c, True) for p, c, _ in PAIRS[:3]] + [(p, r, False) for p, _, r in PAIRS[1:]]
    return [Record({"prompt": p, "completion": y, "label": lab}, "kto.jsonl", i + 1) for i, (p, y, lab) in enumerate(rows)]


def completion_mask(sub: dict, starts: list[int]) -> torch.Tensor:
    """TRL's completion_mask (1 on completion tokens) for our rows."""
    mask = torch.zeros_like(sub["input_ids"])
    for r, s in enumerate(starts):
        mask[r, s:] = 1
    return mask * sub["attention_mask"]


def rows_of(examples) -> list:
    pairs = [e for e in examples if e.rejected is not None]
    single = [e for e in examples if e.rejected is None]
    return [e.chosen for e in pairs] + [e.rejected for e in pairs] + [e.chosen for e in single]


# ---------------------------------------------------------------------------------------- TRL cross-check

def trl_trainer(kind: str, policy, ref, tok, tmp: Path, **args):
    """A TRL trainer over copies of our models (TRL patches their forward), on a tiny dataset of its own."""
    from datasets import Dataset

    common = dict(output_dir=str(tmp / kind), report_to=[], use_cpu=True, bf16=False, per_device_train_batch_size=4)
    if kind == "kto":
        from trl import KTOConfig, KTOTrainer

        data = Dataset.from_list([{"prompt": p, "completion": c, "label": True} for p, c, _ in PAIRS])
        return KTOTrainer(model=policy, ref_model=ref, args=KTOConfig(**common, **args), train_dataset=data,
                          processing_class=tok)
    data = Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS])
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(model=policy, args=ORPOConfig(**common, **args), train_dataset=data, processing_class=tok)
    from trl import DPOConfig, DPOTrainer

    return DPOTrainer(model=policy, ref_model=ref, args=DPOConfig(**common, **args), train_dataset=data,
                      processing_class=tok)


def ours_against_a_reference(llama_dir, objective: str, records, **train):
    """Our loss on one batch of `records`, a policy against a differently seeded frozen reference."""
    task = make_task(llama_dir, objective, train)
    policy, ref = load_llama(llama_dir, seed=1), load_llama(llama_dir, seed=2)
    examples = task.encode(records)
    batch = task.collate(examples, list(range(len(examples))), CPU)
    task.reference = Reference(frozen=frozen(copy.deepcopy(ref)))
    return task, policy, ref, examples, batch, task.loss(policy, batch)


@pytest.mark.parametrize("objective,rpo_alpha", [("dpo", 0.0), ("ipo", 0.0), ("dpo", 0.7), ("ipo", 1.3)])
def test_dpo_and_ipo_match_trl(objective, rpo_alpha, llama_dir, tmp_path) -> None:
    """With train.rpo_alpha, TRL's loss_type [sigmoid|ipo, sft] weighted [1, α] (its RPO)."""
    task, policy, ref, examples, batch, ours = ours_against_a_reference(llama_dir, objective, pair_records(),
                                                                        rpo_alpha=rpo_alpha)
    losses = ["sigmoid" if objective == "dpo" else "ipo"] + (["sft"] if rpo_alpha else [])
    trainer = trl_trainer("dpo", copy.deepcopy(policy), copy.deepcopy(ref), task.tokenizer, tmp_path, beta=0.2,
                          loss_type=losses, loss_weights=[1.0, rpo_alpha][:len(losses)])
    sub = batch["main"]
    inputs = {"input_ids": sub["input_ids"], "attention_mask": sub["attention_mask"],
              "completion_mask": completion_mask(sub, [s.start for s in rows_of(examples)])}
    theirs = trainer._compute_loss(trainer.model, inputs, False)
    assert abs(float(ours) - float(theirs)) < 1e-5, (float(ours), float(theirs))
    assert float(ours) > 0


def test_orpo_matches_trl(llama_dir, tmp_path) -> None:
    """TRL's ORPO takes the NLL over prompt and answer: ours does with data.train_on_inputs (else the answer only)."""
    task = make_task(llama_dir, "orpo", train_on_inputs=True)
    policy = load_llama(llama_dir, seed=1)
    examples = task.encode(pair_records())
    batch = task.collate(examples, list(range(len(examples))), CPU)
    ours = task.loss(policy, batch)
    trainer = trl_trainer("orpo", copy.deepcopy(policy), None, task.tokenizer, tmp_path, beta=0.3)
    sub, p = batch["main"], batch["pairs"]
    starts = [s.start for s in rows_of(examples)]
    labels = sub["input_ids"].masked_fill(completion_mask(sub, starts) == 0, -100)
    theirs, _ = trainer.get_batch_loss_metrics(trainer.model, {
        "chosen_input_ids": sub["input_ids"][:p], "chosen_attention_mask": sub["attention_mask"][:p],
        "chosen_labels": labels[:p], "rejected_input_ids": sub["input_ids"][p:],
        "rejected_attention_mask": sub["attention_mask"][p:], "rejected_labels": labels[p:]})
    assert abs(float(ours) - float(theirs)) < 1e-5, (float(ours), float(theirs))


def test_kto_matches_trl(llama_dir, tmp_path) -> None:
    task, policy, ref, examples, batch, ours = ours_against_a_reference(llama_dir, "kto", kto_records())
    trainer = trl_trainer("kto", copy.deepcopy(policy), copy.deepcopy(ref), task.tokenizer, tmp_path, beta=0.2,
                          desirable_weight=1.0, undesirable_weight=1.5)
    main, kl = batch["main"], batch["kl"]
    rows = rows_of(examples)
    from tuneforge.tasks.preference.task import mismatched

    inputs = {"input_ids": main["input_ids"], "attention_mask": main["attention_mask"],
              "completion_mask": completion_mask(main, [s.start for s in rows]), "label": batch["desirable"],
              "KL_input_ids": kl["input_ids"], "KL_attention_mask": kl["attention_mask"],
              "KL_completion_mask": completion_mask(kl, [s.start for s in mismatched(rows, 48)])}
    theirs = trainer._compute_loss(trainer.model, inputs, False)
    assert abs(float(ours) - float(theirs)) < 1e-5, (float(ours), float(theirs))


# ---------------------------------------------------------------------------------------- invariants

def test_policy_equal_to_reference_gives_log2_and_zero_margins(llama_dir) -> None:
    """LoRA starts at B = 0, so with its adapters off the reference is the policy itself."""
    task = make_task(llama_dir, "dpo")
    method = get_method("lora")
    cfg = load_config(None, base={"name": "p", "task": "preference", "data": {"train": "x.jsonl"}})
    model = method.apply(load_llama(llama_dir), cfg.method, task)
    assert task.use_reference(model, method, lambda: pytest.fail("LoRA needs no copy")).startswith(
        "reference model: the same model")
    out = task.evaluate(model, task.encode(pair_records(), "validation"), 8, CPU, None)
    assert out["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert out["reward_margin"] == 0.0 and out["reward_accuracy"] == 0.5 and out["kl"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("name", ["lora", "adapter"])
def test_adapters_off_reference_is_the_separately_loaded_base(name, llama_dir) -> None:
    task = make_task(llama_dir, "dpo")
    method = get_method(name)
    cfg = load_config(None, base={"name": "p", "task": "preference", "data": {"train": "x.jsonl"},
                                  "method": {"name": name, "reduction": 4}})
    model = method.apply(load_llama(llama_dir), cfg.method, task)
    with torch.no_grad():  # trained adapters: nonzero everywhere
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    task.use_reference(model, method, lambda: pytest.fail("no copy for adapters"))
    examples = task.encode(pair_records())
    batch = task.collate(examples, list(range(len(examples))), CPU)
    s = task.pair_scores(model, batch)
    base = task.logps(load_llama(llama_dir), batch["main"])["seq"]
    assert torch.allclose(s["ref"]["seq"], base, atol=1e-5)
    assert not torch.allclose(s["policy"]["seq"], base, atol=1e-3)  # the adapters do change the policy
    assert torch.allclose(task.logps(model, batch["main"])["seq"], s["policy"]["seq"], atol=1e-6)  # switched back on


def test_full_fine_tuning_keeps_a_frozen_copy(llama_dir) -> None:
    task = make_task(llama_dir, "dpo")
    model = load_llama(llama_dir)
    line = task.use_reference(model, get_method("full"), lambda: copy.deepcopy(model))
    assert "frozen copy" in line and "MiB" in line
    assert not any(p.requires_grad for p in task.reference.frozen.parameters())
    assert "none" in make_task(llama_dir, "orpo").use_reference(model, get_method("full"), lambda: pytest.fail())


# ---------------------------------------------------------------------------------------- data and config

def test_layout_masks_and_system_prompt_come_from_the_instruction_task(llama_dir) -> None:
    task = make_task(llama_dir, "dpo", system="Be brief.")
    ex = task.encode(pair_records())[0]
    text = task.tokenizer.decode(ex.chosen.ids)
    assert text.startswith("< | system | > be brief.") and "< | user | > what is the warranty" in text
    assert task.tokenizer.decode(ex.chosen.ids[ex.chosen.start:]).startswith("two years")
    assert ex.chosen.ids[:ex.chosen.start] == ex.rejected.ids[:ex.rejected.start] == ex.prompt
    assert ex.reference == PAIRS[0][1] and ex.question == PAIRS[0][0]


def test_long_prompts_are_cut_from_the_left_never_the_answer(llama_dir) -> None:
    task = make_task(llama_dir, "dpo", max_length=24)
    long = Record({"prompt": "word " * 60 + "last question", "chosen": "kept answer", "rejected": "other"}, "p.jsonl", 3)
    ex = task.encode([long])[0]
    assert len(ex.chosen.ids) == 24 and task.tokenizer.decode(ex.chosen.ids[ex.chosen.start:]).startswith("kept answer")
    assert any("prompt cut" in n for n in task.notes)


@pytest.mark.parametrize("fields, objective, match", [
    ({"prompt": "q", "completion": "a", "label": True}, "dpo", "train.objective: kto"),
    ({"prompt": "q", "completion": "a", "label": "maybe"}, "kto", "true or false"),
    ({"prompt": "q", "chosen": "a"}, "dpo", "completion column 'rejected'"),
    ({"prompt": "q", "answer": "a"}, "dpo", "data.chosen/data.rejected"),
    ({"chosen": "a", "rejected": "b"}, "dpo", "no 'messages', 'prompt'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "chosen": "a", "rejected": "b"}, "dpo", "end with a user turn"),
])
def test_bad_records_name_file_and_line(fields, objective, match, llama_dir) -> None:
    task = make_task(llama_dir, objective)
    with pytest.raises(DataError, match=match) as e:
        task.encode([Record(fields, "bad.jsonl", 7)])
    assert "bad.jsonl:7" in str(e.value)


def test_kto_labels_and_conversational_completions(llama_dir) -> None:
    task = make_task(llama_dir, "kto")
    recs = [Record({"prompt": "q", "completion": "a", "label": v}, "k.csv", i) for i, v in enumerate(["true", 0, False])]
    assert [e.desirable for e in task.encode(recs)] == [True, False, False]
    chat = Record({"messages": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "yes"}],
                   "rejected": "no"}, "c.jsonl", 1)
    ex = task.encode([chat])[0]
    assert task.tokenizer.decode(ex.chosen.ids[ex.chosen.start:]).startswith("yes")
    cfg = load_config(None, base={"name": "k", "task": "preference", "model": str(llama_dir),
                                  "data": {"train": "x.jsonl", "prompt": "prompt"}, "train": {"objective": "kto"}})
    lopsided = [Record({"prompt": "q", "completion": "a", "label": i < 9}, "k.jsonl", i) for i in range(10)]
    notes = PreferenceTask.from_config(cfg, task.tokenizer, lopsided).notes
    assert notes == ["KTO: 9 desirable and 1 undesirable completions weigh 9.00 : 1 (the paper advises 1 to 4/3): "
                     "set train.desirable_weight to 0.11–0.15"]


@pytest.mark.parametrize("override, match", [
    (["train.objective=dpo"], "not a loss of task classification; remove it, or set task: preference"),
    (["task=preference", "data.packing=true"], "data.packing"),
    (["task=preference", "train.beta=0"], "train.beta"),
    (["task=preference", "data.format=text"], "data.format"),
    (["task=preference", "train.objective=simpo"], "train.objective"),
    (["task=preference", "train.objective=orpo", "train.rpo_alpha=1"], "train.rpo_alpha.*has its own"),
    (["task=preference", "train.objective=kto", "train.rpo_alpha=1"], "train.rpo_alpha.*unpaired"),
])
def test_config_mistakes(override, match) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, override, base={"name": "x", "data": {"train": "x.jsonl"}})


def test_objectives_in_the_config_are_the_tasks() -> None:
    import typing

    from tuneforge.config import TrainConfig

    allowed = typing.get_args(typing.get_args(typing.get_type_hints(TrainConfig)["objective"])[0])
    assert allowed == PreferenceTask.objectives


# ---------------------------------------------------------------------------------------- diagnosis

def rows(margins: list[float], accuracy: list[float]) -> list[dict]:
    return [{"split": "val", "step": 10 * (i + 1), "loss": 0.5, "reward_margin": m, "reward_accuracy": a, "kl": 0.1 * i}
            for i, (m, a) in enumerate(zip(margins, accuracy))]


def test_diagnosis_reads_preference_curves() -> None:
    from tuneforge.guards.diagnosis import diagnose

    train = [{"split": "train", "step": s, "loss": 0.69 - 0.01 * s} for s in range(1, 31)]
    base = {"test": {"rouge_l": 0.62, "fact_accuracy": 0.74}}
    results = {"task": "preference", "method": "lora", "base": base,
               "final": {"test": {"rouge_l": 0.40, "fact_accuracy": 0.71}, "train": {}}}
    over = diagnose(train + rows([0.8, 3.0, 9.0], [0.9, 0.97, 1.0]), results)
    assert over["label"] == "overfitting" and "over-optimization" in over["evidence"][0]
    assert "rouge_l 0.620 → 0.400" in over["evidence"][0] and any("train.beta" in a for a in over["advice"])
    results["final"]["test"]["rouge_l"] = 0.63  # the same margins with generations intact: healthy
    assert diagnose(train + rows([0.8, 3.0, 9.0], [0.9, 0.97, 1.0]), results)["label"] == "healthy"
    # Two evaluations, both late (margins 5.9 → 6.9): the growth shows against the starting model's margin 0
    results["final"]["test"]["rouge_l"] = 0.44
    late = diagnose(train + rows([5.9, 6.9], [0.97, 0.97]), results)
    assert late["label"] == "inconclusive"  # without the starting point: the curve alone shows 1.2-fold
    results["base"]["validation"] = {"reward_margin": 0.0}
    late = diagnose(train + rows([5.9, 6.9], [0.97, 0.97]), results)
    assert late["label"] == "overfitting" and "from 0.000 (step 0) to 6.900" in late["evidence"][0]
    stuck = diagnose(train + rows([0.0, 0.01, 0.02], [0.5, 0.52, 0.49]), results)
    assert stuck["label"] == "underfitting" and "stayed at 0.490–0.520" in stuck["evidence"][-1]


# ---------------------------------------------------------------------------------------- end to end

def tiny_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    topics = ["kettle", "lamp", "warranty", "shipping", "refund", "app"]
    return [{"prompt": f"question {i} about the {rng.choice(topics)}", "chosen": "happy to help with that",
             "rejected": "go away", "fact": "help"} for i in range(n)]


def tiny_config(tmp: Path, model: Path, name: str, task: str, train_file: Path, test_file: Path, **extra) -> Path:
    cfg = {"name": name, "task": task, "model": str(model), "output_dir": str(tmp / "runs"),
           "method": {"name": "lora", "r": 8, "dropout": 0.0},
           "data": {"train": str(train_file), "test": str(test_file), "validation": 0.2, "prompt": "prompt",
                    "response": "chosen", "max_length": 48},
           "privacy": {"pii": "off"}, "leakage": {"policy": "warn"}, "forgetting": {"reference": None},
           "eval": {"batch_size": 16, "max_new_tokens": 6, "samples": 2},
           "train": {"epochs": 3, "batch_size": 8, "lr": 5e-3, "precision": "fp32", "threads": 1, "log_every": 1,
                     "warmup": 0.0}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return write_config(tmp / f"{name}.yaml", **cfg)


def test_continued_from_an_instruction_run_learns_to_prefer_the_chosen_answers(llama_dir, tmp_path) -> None:
    import tuneforge

    train, test = write_jsonl(tmp_path / "train.jsonl", tiny_pairs(40, 0)), write_jsonl(tmp_path / "test.jsonl",
                                                                                        tiny_pairs(12, 1))
    sft = tuneforge.train(str(tiny_config(tmp_path, llama_dir, "sft", "instruction", train, test,
                                          train={"epochs": 1})))
    pref = tuneforge.train(str(tiny_config(tmp_path, llama_dir, "pref", "preference", train, test,
                                           init_from=str(sft.run_dir), train={"objective": "dpo"})))
    e = pref.eval
    assert e["base"]["test"]["reward_accuracy"] == 0.5  # the supervised run is the reference: no preference yet
    assert e["final"]["test"]["reward_accuracy"] >= 0.9 and e["final"]["test"]["reward_margin"] > 0
    assert {"rouge_l", "fact_accuracy", "kl", "chosen_logps", "rejected_logps"} <= set(e["final"]["test"])
    assert "rouge_l" in e["pretrained"]["test"]  # the pretrained model, next to the supervised run and this one
    base_llama = e["pretrained"]["test"]["logp_accuracy"]
    assert e["base"]["test"]["logp_accuracy"] != base_llama or e["base"]["test"]["chosen_logps"] != \
        e["pretrained"]["test"]["chosen_logps"]  # "base" really is the supervised run
    val = [json.loads(line) for line in (pref.run_dir / "metrics.jsonl").read_text().splitlines()
           if json.loads(line)["split"] == "val"]
    assert len(val) == 3 and all("reward_accuracy" in r and "kl" in r for r in val)  # every epoch
    from tuneforge.recipes.inference import evaluate_run

    again = evaluate_run(pref.run_dir, str(test))  # a finished run: the reference is rebuilt (adapters off)
    assert again["reward_accuracy"] == pytest.approx(e["final"]["test"]["reward_accuracy"])
    assert again["reward_margin"] == pytest.approx(e["final"]["test"]["reward_margin"], abs=1e-4)
    assert "reward_accuracy" in again["ci"]
    per_example_evaluation(pref.run_dir, e)
    from tuneforge.tasks.instruction.task import InstructionTask

    more = load_config(str(tiny_config(tmp_path, llama_dir, "more", "instruction", train, test,
                                       init_from=str(sft.run_dir), data={"system": "Be terse."})))
    notes = InstructionTask.from_config(more, loading.load_tokenizer(loading.resolve(str(llama_dir)))).notes
    assert any("another data.system" in n for n in notes)  # instruction continues instruction runs too


def per_example_evaluation(run_dir: Path, e: dict) -> None:
    """What the rows give a preference run: intervals, the paired test against the base, slices, predictions,
    the memorization audit, a verdict from the paired test, and `tuneforge report` comparing runs."""
    final = e["final"]["test"]
    lo, hi = final["ci"]["reward_accuracy"]
    assert lo <= final["reward_accuracy"] <= hi and {"reward_margin", "rouge_l", "kl"} <= set(final["ci"])
    assert e["base"]["test"]["ci"]["reward_accuracy"] == [0.5, 0.5]  # the base is its own reference: all ties
    (vs_base,) = e["comparisons"]["test"]
    assert vs_base["a"] == "base" and vs_base["n"] == 12
    assert vs_base["metrics"]["reward_accuracy"]["delta"] == pytest.approx(final["reward_accuracy"] - 0.5, abs=1e-4)
    assert "rouge_l" in vs_base["metrics"] and "mcnemar" not in vs_base  # the base ties every pair: no McNemar
    rows = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all({"chosen_logps", "reward_margin", "correct", "generated", "rouge_l"} <= set(r)
                                   for r in rows)
    assert sum(r["correct"] for r in rows) / 12 == pytest.approx(final["reward_accuracy"])
    assert (run_dir / "predictions" / "base-test.jsonl").is_file()
    assert e["audit"]["membership"]["members"] > 0 and e["audit"]["membership"]["non_members"] == 12
    from tuneforge.recipes.audit import audit_run

    again = audit_run(run_dir)["membership"]  # `tuneforge audit RUN`: no reference model needed to score
    assert again["auc"] == pytest.approx(e["audit"]["membership"]["auc"], abs=0.02)
    if len({r["length"] for r in rows}) > 1:
        assert any(s["slice"] == "input length" for s in e["slices"]["test"]["slices"])
    from tuneforge.evaluation import comparison
    from tuneforge.evaluation.verdict import paragraph

    assert "(paired bootstrap)" in paragraph(e, PreferenceTask)["text"]
    run = comparison.load(run_dir)
    same = comparison.paired_against(run, run, PreferenceTask)
    assert same["mcnemar"]["only_a"] == same["mcnemar"]["only_b"] == 0 and same["n"] == 12
    assert "Paired tests" in comparison.render([run_dir, run_dir])


def test_init_from_must_be_a_language_model_run(llama_dir, tmp_path) -> None:
    fake = tmp_path / "runs" / "cls"
    (fake / "model").mkdir(parents=True)
    (fake / "model" / "tuneforge.json").write_text(json.dumps({"task": "classification", "labels": ["a", "b"]}))
    cfg = load_config(str(tiny_config(tmp_path, llama_dir, "p", "preference", tmp_path / "t.jsonl",
                                      tmp_path / "t.jsonl", init_from=str(fake))))
    with pytest.raises(TuneforgeError, match="is a classification run, whose model cannot generate"):
        PreferenceTask.from_config(cfg, loading.load_tokenizer(loading.resolve(str(llama_dir))))


def test_the_example_config_reads_vets_and_encodes_its_data() -> None:
    """examples/support-bot-prefs.yaml against its files (without the supervised run it starts from)."""
    from tuneforge.recipes.train import prepare

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(str(root / "examples" / "support-bot-prefs.yaml"), ["init_from=null"])
    prep = prepare(cfg)
    assert {k: len(v) for k, v in prep.encoded.items()} == {"train": 306, "validation": 34, "test": 80}
    assert not prep.task.notes  # nothing is cut at data.max_length
    ex = prep.encoded["test"][0]
    assert "You are Brightkettle's customer-support assistant." in prep.tokenizer.decode(ex.prompt)
    assert ex.fact and ex.fact in ex.reference


# ---------------------------------------------------------------------------------------- per-example rows

@pytest.mark.parametrize("objective", ["dpo", "orpo", "kto"])
def test_rows_reproduce_evaluate_and_score_membership(objective, llama_dir) -> None:
    """evaluate_rows' rows, through tally/summarize, give evaluate's numbers (reward accuracy to the bit);
    example_nll is each chosen answer's summed NLL and token count; a model that is its own reference ties
    every pair, and McNemar's column is then left out."""
    from tuneforge.evaluation.uncertainty import intervals, point

    task = make_task(llama_dir, objective)
    policy = load_llama(llama_dir, seed=1)
    task.reference = Reference(frozen=frozen(load_llama(llama_dir, seed=2)))
    examples = task.encode(kto_records() if objective == "kto" else pair_records(), "validation")
    want = task.evaluate(policy, examples, 3, CPU, None)
    got, rows = task.evaluate_rows(policy, examples, 3, CPU, None)
    assert got == want and len(rows) == len(examples)
    assert [r["where"] for r in rows] == [e.where for e in examples]
    cols = task.tally(rows)
    again = point(cols, task.summarize)
    assert again["reward_accuracy"] == want["reward_accuracy"]  # exactly
    for k in ("reward_margin", "chosen_logps", "rejected_logps", "logp_accuracy", "kl"):
        if k in want:
            assert again[k] == pytest.approx(want[k], abs=2e-4), k
    assert "correct" in cols and set(intervals(cols, task.summarize, ["reward_accuracy"], 200)) == {"reward_accuracy"}
    sums, units = task.example_nll(policy, examples, 2, CPU, None)
    side = "logps" if objective == "kto" else "chosen_logps"
    assert sums.tolist() == pytest.approx([-r[side] for r in rows], abs=1e-3)
    assert units.tolist() == [r["tokens"] for r in rows] and min(units) > 1
    if objective == "kto":  # its completions are sliced by label, without the margin that needs both
        from tuneforge.evaluation.slices import slice_table

        keys = task.auto_slices(rows)
        assert keys["label"].count("desirable") == 3
        table = slice_table(cols, task.summarize, keys, list(task.headline), task.primary_metric, "max", 50, 0,
                            task.slice_metrics)
        assert all("reward_margin" not in e["metrics"] and "reward_accuracy" in e["metrics"] for e in table["slices"])
    if objective == "dpo":  # the policy is its own reference: every pair a tie, counted half
        task.reference = Reference(frozen=frozen(copy.deepcopy(policy)))
        _, tied = task.evaluate_rows(policy, examples, 3, CPU, None)
        assert all(r["correct"] is None and r["reward_margin"] == 0 for r in tied)
        cols = task.tally(tied)
        assert "correct" not in cols and point(cols, task.summarize)["reward_accuracy"] == 0.5
