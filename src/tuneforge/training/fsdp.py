"""FSDP2: shard a model block by block (`fully_shard`), save and load its sharded training state through
torch.distributed.checkpoint without pickle, and gather the full trainable weights for the final model.

An FSDP checkpoint is a checkpoint directory as for one process (training/checkpoint.py), except that the
trainable weights, their AdamW state and the best weights are not in trainable.safetensors / state.safetensors
but in `sharded/`: one safetensors file per rank, written by torch DCP's HuggingFaceStorageWriter, whose
headers record where each shard sits in the full tensor (DCP's default writer pickles that into `.metadata`;
these checkpoints stay pickle-free). state.json lists and checksums those files like any other. Loading goes
through DCP's HuggingFaceStorageReader, which reshards: a checkpoint written by N processes loads on M, and on
one process it loads whole — the same code consolidates it.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import TuneforgeError
from ..models.anatomy import transformer_blocks
from .treecodec import decode, encode

SHARDED = "sharded"  # the subdirectory of a checkpoint holding the DCP files


def shard_model(root: nn.Module, model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """fully_shard every transformer block of `model`, then `root` (which holds it: embeddings, heads and
    norms are sharded as one group). On CUDA with bf16/fp16 training, parameters are all-gathered in that
    dtype and gradients reduced in fp32 (MixedPrecisionPolicy); the sharded master weights stay fp32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    blocks = transformer_blocks(model)
    if blocks is None:
        raise TuneforgeError(f"train.distributed: fsdp shards a model block by block, and {type(model).__name__} "
                             "has no list of transformer blocks; use train.distributed: ddp")
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) \
        if dtype is not None and device.type == "cuda" else MixedPrecisionPolicy()
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(root, mesh=mesh, mp_policy=policy)
    return root


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def _first_failure(error: BaseException) -> BaseException:
    """DCP gathers every rank's exception into one CheckpointException; the first one says what happened."""
    failures = getattr(error, "failures", None)
    if failures:
        return next(iter(failures.values()))[0]
    return error


def _state(model: nn.Module, optimizer: Any, best: dict[str, torch.Tensor] | None) -> tuple[dict[str, Any], Any]:
    """(tensors for DCP, the optimizer state's JSON structure): trainable weights as `model.*`, best weights as
    `best.*`, every optimizer tensor under its path in the optimizer's (FQN-keyed) state dict."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    tensors = {f"model.{n}": t for n, t in _trainable(model).items()}
    if best is not None:
        tensors.update({f"best.{n}": t for n, t in best.items()})
    structure = encode(get_optimizer_state_dict(model, optimizer), tensors, "optimizer")
    return tensors, structure


def save_sharded(directory: Path, model: nn.Module, optimizer: Any,
                 best: dict[str, torch.Tensor] | None) -> Any:
    """Every rank writes its shards into `directory` (collective); returns the optimizer state's structure
    (for state.json)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    tensors, structure = _state(model, optimizer, best)
    try:
        dcp.save(tensors, storage_writer=HuggingFaceStorageWriter(str(directory), save_distributed=True))
    except BaseException as e:  # CheckpointException is a BaseException
        raise _first_failure(e) from None
    return structure


def load_sharded(directory: Path, model: nn.Module, optimizer: Any, structure: Any,
                 has_best: bool) -> dict[str, torch.Tensor] | None:
    """Load weights and optimizer state (in place, resharded to this world) and return the best weights."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    best = {n: t.clone() for n, t in _trainable(model).items()} if has_best else None
    tensors, template = _state(model, optimizer, best)
    saved = set(tensor_paths(structure))
    now = set(tensor_paths(template))
    if saved != now:
        odd = sorted(saved ^ now)[0]
        raise TuneforgeError(f"{directory} does not match this model and method ({odd} is in only one of them); "
                             "resume with the same model and method, or start over with --overwrite")
    try:
        with warnings.catch_warnings():  # on one process: "assuming the intent is to load in a single process"
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(directory)))
    except BaseException as e:
        raise TuneforgeError(f"cannot read the sharded checkpoint {directory} ({_first_failure(e)})") from None
    set_optimizer_state_dict(model, optimizer, decode(structure, tensors))
    return best


def tensor_paths(structure: Any) -> list[str]:
    """The tensor names an encoded tree refers to."""
    if isinstance(structure, dict):
        if "__tensor__" in structure:
            return [structure["__tensor__"]]
        return [p for v in structure.values() for p in tensor_paths(v)]
    if isinstance(structure, list):
        return [p for v in structure for p in tensor_paths(v)]
    return []


def full_trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole trainable weights, gathered to rank 0's CPU (collective; other ranks get {})."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return dict(get_model_state_dict(model, options=options))
