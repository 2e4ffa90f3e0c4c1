"""Config: typed loading, dotted overrides, and every problem reported at once with a fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.config import Config, load_config, reference_rows
from tuneforge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    return info.value.problems


def test_loads_typed_values_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "name: s\ndata: {train: t.jsonl}\ntrain: {lr: 1e-3, epochs: 2}\n"))
    assert isinstance(cfg, Config)
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)  # YAML reads 1e-3 as text
    assert cfg.train.epochs == 2.0 and cfg.method.name == "lora" and cfg.privacy.pii == "redact"
    assert cfg.run_dir == Path("runs/s")


def test_dotted_overrides_win_and_are_typed(tmp_path):
    cfg = load_config(write(tmp_path, "name: s\ndata: {train: t.jsonl}\n"),
                      ["train.lr=3e-4", "method.r=16", "method.targets=[query,value]", "data.validation=null"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.method.r == 16 and cfg.method.targets == ["query", "value"] and cfg.data.validation is None


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my-run.yaml"
    path.write_text("data: {train: t.jsonl}\n")
    assert load_config(path).name == "my-run"


def test_unknown_key_suggests_the_right_one(tmp_path):
    found = problems(tmp_path, "name: s\ndata: {train: t.jsonl}\ntrain: {learning_rate: 0.1}\n")
    assert found == ["unknown key `train.learning_rate`; did you mean `train.lr`?"]


def test_every_problem_is_reported_at_once(tmp_path):
    found = problems(tmp_path, "name: s\ndata: {train: t.jsonl}\nmethod: {name: lorax, r: 0}\n"
                               "train: {epochs: three, batch_size: 8.5}\nprivacy: {pii: maybe}\n")
    text = "\n".join(found)
    assert len(found) == 5, found
    assert "`method.name` = 'lorax' is not one of full | lora" in text
    assert "`method.r` = 0 is below the minimum 1" in text
    assert "`train.epochs` = 'three' is not a number" in text
    assert "`train.batch_size` = 8.5 is not an integer" in text
    assert "`privacy.pii` = 'maybe' is not one of off | warn | redact | block" in text


def test_bool_is_not_a_number_and_number_is_not_bool(tmp_path):
    found = problems(tmp_path, "name: s\ntrain: {lr: true}\ndata: {train: t, packing: 1}\n")
    assert any("`train.lr` = True is not a number" in p for p in found)
    assert any("`data.packing` = 1 is not true or false" in p for p in found)


def test_section_must_be_a_mapping(tmp_path):
    assert problems(tmp_path, "name: s\ndata: {train: t.jsonl}\ntrain: 5\n") == \
        ["`train` must be a mapping of keys, got 5"]


def test_missing_train_and_bad_fractions(tmp_path):
    found = problems(tmp_path, "name: s\ndata: {validation: 1.5}\n")
    assert any("`data.train` is missing" in p for p in found)
    assert any("`data.validation` = 1.5 must be a fraction" in p for p in found)


def test_malformed_yaml_names_the_line(tmp_path):
    found = problems(tmp_path, "name: s\ndata:\n  train: [a\n  test: b\n")
    assert len(found) == 1 and "cfg.yaml:" in found[0] and "malformed YAML" in found[0]


def test_empty_and_non_mapping_configs(tmp_path):
    assert "config is empty" in problems(tmp_path, "")[0]
    assert "expected a mapping" in problems(tmp_path, "- a\n- b\n")[0]


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_without_equals(tmp_path):
    found = problems(tmp_path, "name: s\ndata: {train: t.jsonl}\n", ["train.lr"])
    assert found == ["override 'train.lr' is not key=value (e.g. train.lr=3e-4)"]


def test_relative_data_paths_resolve_against_the_config(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.jsonl").write_text('{"text": "a", "label": "x"}\n')
    cfg = load_config(write(tmp_path, "name: s\ndata: {train: d/t.jsonl}\n"))
    assert Path(cfg.data.train) == tmp_path / "d" / "t.jsonl"


def test_reference_covers_every_leaf_key_with_a_description():
    rows = reference_rows()
    keys = {k for k, _, _ in rows}
    assert {"train.lr", "method.r", "data.train", "train.early_stopping.patience", "leakage.policy"} <= keys
    assert all(doc for _, _, doc in rows), [k for k, _, d in rows if not d]


def test_bare_off_means_off_in_yaml_and_on_the_command_line(tmp_path):
    """YAML 1.1 reads `off` as false; `privacy.pii: off` must still mean the choice "off"."""
    path = tmp_path / "c.yaml"
    path.write_text("name: s\ndata: {train: t.jsonl}\nprivacy: {pii: off}\n")
    assert load_config(path).privacy.pii == "off"
    assert load_config(path, ["privacy.pii=off"]).privacy.pii == "off"
    assert problems(tmp_path, "name: s\ndata: {train: t.jsonl}\nleakage: {policy: off}\n")  # no "off" choice there


# ---------------------------------------------------------------- mistakes that need more than one key

OK = "name: s\ndata: {train: t.jsonl}\n"


def test_zero_epochs_needs_max_steps(tmp_path):
    """The loop rounds 0 epochs up to one step: refuse it rather than train one step and say "train longer"."""
    found = problems(tmp_path, OK + "train: {epochs: 0}\n")
    assert found == ["`train.epochs` = 0 trains nothing; set train.epochs above 0 (e.g. 3) or set train.max_steps"]
    assert load_config(write(tmp_path, OK + "train: {epochs: 0, max_steps: 5}\n")).train.max_steps == 5


def test_a_bad_fraction_is_one_problem(tmp_path):
    assert problems(tmp_path, "name: s\ndata: {train: t.jsonl, validation: 1.5}\n") == \
        ["`data.validation` = 1.5 must be a fraction between 0 and 1 (e.g. 0.1), or a file"]


def test_text_column_equal_to_label_column(tmp_path):
    found = problems(tmp_path, "name: s\ndata: {train: t.jsonl, text: label}\n")
    assert len(found) == 1 and "`data.text` and `data.label` both name the column 'label'" in found[0]
    assert load_config(write(tmp_path, "name: s\ntask: instruction\ndata: {train: t.jsonl, text: label}\n"))


# ---------------------------------------------------------------- YAML that is ambiguous or too large

def test_duplicate_keys_name_the_line_and_the_key(tmp_path):
    assert problems(tmp_path, OK + "train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n") == \
        [f"{tmp_path / 'cfg.yaml'}:6: duplicate key 'lr' (also on line 4); YAML would silently keep the last "
         "one: keep one"]
    assert "cfg.yaml:3: duplicate key 'name'" in problems(tmp_path, OK + "name: t\n")[0]
    assert "duplicate key 'lr'" in problems(tmp_path, OK, ["train={lr: 1, lr: 2}"])[0]


def test_anchors_and_merge_keys_still_work(tmp_path):
    cfg = load_config(write(tmp_path, OK + "method: {targets: &t [query, value], modules_to_save: *t}\n"
                                           "train: {<<: {lr: 0.001, epochs: 2}, lr: &lr 0.01, warmup: *lr}\n"))
    assert cfg.method.modules_to_save == ["query", "value"]
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.warmup) == (0.01, 2, 0.01)  # an explicit key beats a merged one


def billion_laughs(levels: int = 9) -> str:
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_without_expanding_it(tmp_path):
    found = problems(tmp_path, OK + billion_laughs())
    assert len(found) == 1 and "cfg.yaml:" in found[0] and "more than 20,000 values once aliases are expanded" \
        in found[0]
    flow = "[" + ", ".join(["&a [x, x, x, x, x, x, x, x, x, x]"] + ["&b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]"]
                          + ["&c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]"] + ["[*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]"] * 30) + "]"
    found = problems(tmp_path, OK, [f"method.targets={flow}"])
    assert found[0].startswith("override `method.targets`: more than 20,000 values")


def test_recursive_alias_is_refused(tmp_path):
    found = problems(tmp_path, OK + "method: {targets: &a [q, *a]}\n")
    assert len(found) == 1 and "cfg.yaml:3: alias *a refers to the value it is inside" in found[0]


def test_deep_nesting_and_huge_numbers_are_refused_with_the_line(tmp_path):
    found = problems(tmp_path, OK + "method: {targets: " + "[" * 5000 + "]" * 5000 + "}\n")
    assert len(found) == 1 and "cfg.yaml:3: nested deeper than 32 levels" in found[0]
    found = problems(tmp_path, OK + "train:\n  batch_size: " + "9" * 5000 + "\n")
    assert found == [f"{tmp_path / 'cfg.yaml'}:4: a number of 5,000 digits; no setting needs one"]
    found = problems(tmp_path, OK, ["train.batch_size=" + "9" * 5000])
    assert found == ["override `train.batch_size`: a number of 5,000 digits; no setting needs one"]
    with pytest.raises(ConfigError, match="`train.lr` = 1000000000.* is not a finite number"):
        load_config(None, base={"name": "s", "data": {"train": "t"}, "train": {"lr": 10 ** 400}})


def test_config_file_size_is_bounded(tmp_path):
    found = problems(tmp_path, OK + "#" * (1 << 20) + "\n")
    assert found == [f"{tmp_path / 'cfg.yaml'}: larger than 1 MiB, not a config (a config is a few KB; data files "
                     "go in data.train)"]


def test_echoed_values_are_bounded(tmp_path):
    long = "x" * 100_000
    found = problems(tmp_path, OK + f"train:\n  lr: {long}\n  ? {long}\n  : 1\nmethod: {{targets: [[{long}]]}}\n",
                     [long, f"eval.samples={{{long}: [{long}]}}"])
    assert len(found) == 5 and not [p for p in found if "x" * 70 in p], found
    assert any(p.startswith("`train.lr` = 'xxxx") and "..." in p for p in found)  # reprlib's own ellipsis
    assert any(p.startswith("unknown key `train.xxxx") for p in found)
    assert any(p.startswith("override 'xxxx") and "…" in p for p in found)


def test_long_lists_are_bounded(tmp_path):
    found = problems(tmp_path, OK, ["method.targets=[" + ", ".join(["q"] * 5000) + "]"])
    assert found == ["`method.targets` = ['q', 'q', 'q', 'q', ...] is not text or a list of at most 4,096 "
                     "entries (it has 5,000)"]
    assert len(load_config(write(tmp_path, OK), ["method.targets=[" + ", ".join(["q"] * 4096) + "]"]).method.targets) \
        == 4096


def test_the_number_of_problems_listed_is_bounded(tmp_path):
    found = problems(tmp_path, OK + "".join(f"key{i}: 1\n" for i in range(5000)))
    assert len(found) == 21 and found[-1] == "... and 4,980 more problems"


def test_every_shipped_example_config_loads() -> None:
    """Each examples/*.yaml run config is valid (unknown keys, bad values and cross-key problems are errors);
    sequence.yaml is a `tuneforge sequence` file (its `tasks` are configs of their own)."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    configs = [p for p in sorted((root / "examples").glob("*.yaml"))
               if "tasks" not in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})]
    assert len(configs) >= 8
    for path in configs:
        assert load_config(str(path)).name, path
