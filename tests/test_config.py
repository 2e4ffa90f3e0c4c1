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
    found = problems(tmp_path, "name: s\ndata: {train: t.jsonl}\ntrain: {lr: true}\ndata: {train: t, packing: 1}\n")
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
