"""The mistakes a user can make, as exceptions the CLI prints as one line (rlreason.cli), and
the rule that tells a local path from a hub id, shared by model and data-set resolution.

    UserError       exit 2: a usage or config error, a path or name that is not there
    RunFailed       exit 1: the run was started and failed (a dry run with a FAIL line)

Anything else that escapes a command is a bug in rlreason: the CLI shows its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix; the message names the key, file, path or row."""

    exit_code = 2


class UsageError(UserError, ValueError):
    """Command-line arguments that do not fit the command."""


class NotFound(UserError, FileNotFoundError):
    """A model, data set, file or checkpoint that is not where the user said."""


class HubUnreachable(NotFound):
    """Not found locally, and the HF hub could not be asked (offline or no network)."""


class DataError(UserError, ValueError):
    """Rows that do not fit their mapping: the message names the source, the row and the field."""


class RunFailed(UserError):
    """The run started and failed."""

    exit_code = 1


def is_local_path(name: str) -> bool:
    """Whether `name` is a local path and never a hub id: it starts with '/', '.' or '~', has more
    than one '/' (a hub id is NAME or OWNER/NAME), or exists here in part (its first component)."""
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return True
    return Path(name.split("/")[0]).exists()


def hub_status(error: BaseException) -> str:
    """How the hub failed, for a 'not found' line: offline by setting, or unreachable."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline (HF_HUB_OFFLINE=1)"
    return f"unreachable ({type(error).__name__})"


def nowhere(what: str, name: str, tried: list[str], error: BaseException) -> HubUnreachable:
    """The error for a `what` ('model', 'data set') found in none of the places `tried`, in the
    order tried, the hub last: "model 'x': not a local path, ..., and the hub is offline (...)"."""
    return HubUnreachable(f"{what} {name!r}: {', '.join(tried)}, and the hub is {hub_status(error)}")
