"""One error type for every user mistake: the CLI prints its message on one line and exits 2."""
from __future__ import annotations


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
