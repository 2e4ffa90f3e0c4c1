"""Methods: how a model is trained, behind one interface (methods/base.py). A method decides which parameters
train (full, lora/dora, qlora, adapter, freeze, scratch), how the result is saved, reloaded and merged, and
declares what others ask about it (family, whether it saves a full model, frozen base, conventional learning
rate, its advice when a run over- or underfits). Code outside methods/ reads those attributes, never the name.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import TuneforgeError

if TYPE_CHECKING:
    from .base import Method

# name -> "module:Class", imported on first use (qlora pulls in bitsandbytes). The order is the config's.
REGISTRY = {
    "full": "tuneforge.methods.full:FullMethod",
    "lora": "tuneforge.methods.lora:LoraMethod",
    "qlora": "tuneforge.methods.qlora:QLoraMethod",
    "dora": "tuneforge.methods.lora:DoraMethod",
    "adapter": "tuneforge.methods.adapters:AdapterMethod",
    "freeze": "tuneforge.methods.freeze:FreezeMethod",
    "scratch": "tuneforge.methods.full:ScratchMethod",
}
NAMES = tuple(REGISTRY)


def method_class(name: str) -> "type[Method]":
    """The Method class registered under `name`."""
    if name not in REGISTRY:
        raise TuneforgeError(f"unknown method {name!r}; the methods are {', '.join(NAMES)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_method(name: str) -> "Method":
    """A fresh instance of the method registered under `name`."""
    return method_class(name)()
