"""The known third-party warnings are silenced at the source, and only they: a user's error stays one line,
and a new warning still shows. (Through real processes with warnings on: test_bad_input.py's subprocess test.)"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from helpers_tiny import make_tiny_bert

from tuneforge.models import loading as models
from tuneforge.config import MethodConfig
from tuneforge.methods import get_method
from tuneforge.quiet import silence_known_warnings


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("quiet") / "bert")


def lora_warnings(bert: Path, silence: bool) -> list[str]:
    """Warnings (all shown, as -W always would) while PEFT wraps a model: it calls a renamed transformers API."""
    model = models.load_classifier(models.resolve(str(bert)), ["a", "b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if silence:
            silence_known_warnings()
        get_method("lora").apply(model, MethodConfig(r=2), "classification")
        warnings.warn("a warning nobody has seen before", FutureWarning)
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def test_peft_future_warning_is_silenced_and_others_still_show(bert: Path) -> None:
    loud = lora_warnings(bert, silence=False)
    assert any("is_gradient_checkpointing" in w for w in loud)  # what every LoRA command printed
    quiet = lora_warnings(bert, silence=True)
    assert not any("is_gradient_checkpointing" in w for w in quiet)
    assert "FutureWarning: a warning nobody has seen before" in quiet


def test_installing_twice_adds_no_duplicate_filters() -> None:
    with warnings.catch_warnings():
        silence_known_warnings()
        before = len(warnings.filters)
        silence_known_warnings()
        assert len(warnings.filters) == before
