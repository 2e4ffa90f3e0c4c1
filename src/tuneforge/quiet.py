"""Silence the third-party warnings every tuneforge command would print, so a user's error stays one line.

Each filter names the exact message, category and module that `python -W default -m tuneforge.cli ...`
showed (torch 2.13, transformers 5.24, peft 0.21, bitsandbytes 0.50); nothing else is hidden, so a new
warning still shows up.
"""
from __future__ import annotations

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
    before adding it). They go first in the list, so they hold under -W default or PYTHONWARNINGS too."""
    for message, category, module in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
