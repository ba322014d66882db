"""Progress bars: tqdm on a terminal; plain lines in a redirected log (a bar there is runs of `\\r`).

`progress_bar(total, desc, unit)` returns an object with tqdm's `update(n)`, `n`, `close()` and the
context-manager protocol. When the stream is not a terminal it prints `desc: 40% (400/1000 img, 12s)`
at every tenth of the total (at most one line per `PLAIN_EVERY_SEC`) and a last line at the end;
`when_piped="quiet"` prints nothing there instead (dataset_tool, whose summary lines say it all).
"""
import sys
import time

PLAIN_EVERY_SEC = 5.0


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainProgress:
    """tqdm's interface, printing a line per tenth done instead of redrawing a bar."""

    def __init__(self, total, desc, unit, stream, quiet=False):
        self.total, self.desc, self.unit, self.stream, self.quiet = total, desc, unit, stream, quiet
        self.n, self.start, self.last_line = 0, time.time(), None
        self.next_tenth = 1
        self.closed = False

    def update(self, n=1):
        self.n += n
        if not self.total or self.quiet:
            return
        tenth = int(10 * self.n / self.total)
        now = time.time()
        if tenth >= self.next_tenth and self.n < self.total and \
                (self.last_line is None or now - self.last_line >= PLAIN_EVERY_SEC):
            self._line()
            self.last_line = now
            self.next_tenth = tenth + 1

    def _line(self):
        of = f"/{self.total}" if self.total else ""
        percent = f"{100 * self.n // self.total}% " if self.total else ""
        print(f"{self.desc}: {percent}({self.n}{of} {self.unit}, {time.time() - self.start:.0f}s)",
              file=self.stream, flush=True)

    def close(self):
        if not self.closed and not self.quiet and self.n:
            self._line()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        self.closed = True  # an error's own line stands alone


def progress_bar(total=None, desc="", unit="it", enabled=True, stream=None, when_piped="lines", **tqdm_kwargs):
    """tqdm on a terminal, else `PlainProgress` (lines, or nothing with when_piped="quiet")."""
    stream = stream or sys.stderr
    if enabled and is_terminal(stream):
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, **tqdm_kwargs)
    return PlainProgress(total, desc, unit, stream, quiet=not enabled or when_piped == "quiet")
