"""Errors raised for user mistakes: the CLI prints them as one line, never a traceback."""

from __future__ import annotations

from pathlib import Path


class CldynError(Exception):
    """Base class of the errors cldyn reports to a user as one line."""


class InputError(CldynError):
    """A user-supplied file or folder cannot be used; the message names it and says why."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class OutputExistsError(InputError):
    """An output exists and replacing it was not asked for. The message names the API's switch
    (``overwrite=True``); :meth:`for_command_line` names the command line's (``--overwrite``)."""

    API_HINT, CLI_HINT = "pass overwrite=True", "pass --overwrite"

    def for_command_line(self) -> str:
        return str(self).replace(self.API_HINT, self.CLI_HINT)


class CheckpointError(InputError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


class MissingExtraError(CldynError):
    """An optional dependency is not installed; the message names the pip extra that provides it."""
