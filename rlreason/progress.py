"""Progress of a long phase (the warm start, an evaluation): a tqdm bar on a terminal, and a
plain line every `every_s` seconds (and at the end) when the output is not one (CI, `ray job
logs`, a file), formatted by tqdm as well: count, elapsed time, rate, ETA and the postfix."""

from __future__ import annotations

import time

from tqdm import tqdm

from rlreason import console


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "step", stream=None, every_s: float = 10.0):
        self.stream = stream if stream is not None else console.err()
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.n, self.postfix, self.t0 = 0, "", time.monotonic()
        self.last_line = self.t0
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=True) if tty else None

    def update(self, n: int, **postfix) -> None:
        """n more done; postfix: what to show beside the count (loss=0.83)."""
        self.n += n
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix, refresh=False)
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last_line >= self.every_s or self.n >= self.total:
            self.last_line = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        return tqdm.format_meter(self.n, self.total, time.monotonic() - self.t0, prefix=self.desc, unit=self.unit,
                                 postfix=self.postfix or None, ncols=0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
