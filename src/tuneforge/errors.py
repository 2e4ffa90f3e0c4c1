"""One error type for every user mistake: the CLI prints its message on one line and exits 2.

`show` and `clip` bound what a message echoes of a user's value, so an error stays one readable line.
"""
from __future__ import annotations

import reprlib
from typing import Any

SHOW_CHARS = 60  # longest echo of a user's value in an error message
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOW_CHARS


def clip(text: str, limit: int = SHOW_CHARS) -> str:
    """`text` cut to `limit` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def show(value: Any) -> str:
    """A user's value for an error message: a bounded repr (nested and long values are abbreviated)."""
    try:
        return clip(_REPR.repr(value))
    except ValueError:  # an int too long for str(); only reachable through the Python API
        return f"<{type(value).__name__}>"


class TuneforgeError(Exception):
    """A problem the user can fix. The message names the file:line or config key and the fix."""


class ConfigError(TuneforgeError):
    """One or more problems in the config; `problems` holds every one of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems) if len(problems) == 1 else
                         f"{len(problems)} problems in the config:\n  - " + "\n  - ".join(problems))


class DataError(TuneforgeError):
    """A problem in a data file, named by file and line."""

    def __init__(self, file: str, line: int | None, problem: str, fix: str = ""):
        self.file, self.line = file, line
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {problem}" + (f" ({fix})" if fix else ""))
