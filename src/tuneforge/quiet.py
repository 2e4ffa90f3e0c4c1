"""Silence the third-party warnings every tuneforge command would print, so a user's error stays one line.

Each filter names the exact message, category and module that `python -W default -m tuneforge.cli ...`
showed (torch 2.13, transformers 5.24, peft 0.21, bitsandbytes 0.50); nothing else is hidden, so a new
warning still shows up.
"""
from __future__ import annotations

import os
import warnings

KNOWN = [
    # bitsandbytes compiles a kernel at import, which imports torch.utils.mkldnn, which uses script_method
    (r"`torch\.jit\.script_method` is deprecated", DeprecationWarning, r"torch\.jit\._script"),
    # peft calls transformers' is_gradient_checkpointing, renamed in transformers 5 (our code never calls it)
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning, r"transformers\.modeling_utils"),
    # torch's weights-only unpickler on an allow_pickle model saved with pickle protocol 4: it either loads
    # the tensors or refuses the file, and the refusal is tuneforge's one error line
    (r"Detected pickle protocol \d+ in the checkpoint", UserWarning, r"torch\._weights_only_unpickler"),
]

def silence_known_warnings() -> None:
    """Install the filters; calling again is harmless (warnings.filterwarnings drops an identical filter
    before adding it). They go first in the list, so they hold under -W default or PYTHONWARNINGS too.

    Under torchrun (WORLD_SIZE > 1), also torch's C++ warnings, unless the user set TORCH_CPP_LOG_LEVEL:
    when a process of the run ends, the others' c10d store and gloo sockets log a warning with a C++ stack
    trace each (torch 2.13), after the one error line that says what happened. Read when torch is imported."""
    for message, category, module in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
