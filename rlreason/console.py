"""Where the run's own lines go (the model, the run directory, progress, the step lines, the
summary, errors): the terminal. The CLI (rlreason.cli.CommandLog) sends everything else, the
libraries' lines and the actors' forwarded output, to the command's log file only, unless
--verbose; it then points these streams at the terminal, each line copied into the log too.
Outside the CLI (a notebook, a test) they are sys.stdout and sys.stderr."""

from __future__ import annotations

import sys

_streams: dict = {}


def out():
    """The stream for the run's own output (step lines, the summary)."""
    return _streams.get("out", sys.stdout)


def err():
    """The stream for progress, the run's own log lines and errors."""
    return _streams.get("err", sys.stderr)


def use(out_stream, err_stream) -> None:
    _streams.update(out=out_stream, err=err_stream)


def reset() -> None:
    _streams.clear()
