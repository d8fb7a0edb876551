"""Progress of long loops, readable in three places: live in Jupyter, in a saved notebook, in the runner's output.

Every long loop of the kit (pretraining, sampling, collection, audit, evaluation) wraps its iterable in
`progress_bar(...)`, a `tqdm` whose display depends on where the code runs:

- in a notebook kernel (JupyterLab, or papermill under the runner) the bar is one text line that updates in place
  (an IPython display with a display id): no ipywidget, so the saved notebook keeps the bar's *final* state
  (`train: 100%|...| 400/400 [05:12<00:00, ...]`) and its HTML export shows the same line;
- in a terminal (`python -m cogito_lib.pipe think ...`) it is tqdm's usual bar on stderr;
- when the runner sets `COGITO_PROGRESS_LOG` (a file), every bar also appends a plain line to that file at its
  start, every `COGITO_PROGRESS_EVERY_S` seconds (default 15) with the step, the rate and the time left, and when it
  ends; the runner prints those lines under the notebook's name as they come, so a headless run shows the step
  and an ETA of a long cell. Processes a notebook starts (parallel training) inherit the variable and report too.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

from tqdm.std import tqdm

LOG_ENV = "COGITO_PROGRESS_LOG"  # a file every bar appends its progress lines to (set by the runner)
EVERY_ENV = "COGITO_PROGRESS_EVERY_S"  # seconds between two lines of one bar in that file
DEFAULT_EVERY_S = 15.0


def in_kernel() -> bool:
    """True inside a Jupyter kernel (Lab, Notebook, papermill), False in a terminal or a plain subprocess."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def format_seconds(seconds: float | None) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`: how a log line states a duration."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _Nowhere:
    """A file that swallows tqdm's terminal output where the notebook display or the log file shows it instead."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class ProgressBar(tqdm):
    """tqdm with an in-place notebook line and log-file lines (see the module docstring)."""

    def __init__(self, iterable: Iterable | None = None, *args: Any, **kwargs: Any):
        self._kernel = in_kernel()
        self._log_path = os.environ.get(LOG_ENV) or None
        try:
            self._every_s = float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S))
        except ValueError:
            self._every_s = DEFAULT_EVERY_S
        self._handle = None
        self._last_log = None
        if self._kernel or self._log_path:
            kwargs["file"] = _Nowhere()  # the display line or the log file reports instead of the terminal
            kwargs.setdefault("mininterval", 0.5)
        if self._kernel:
            kwargs.setdefault("ncols", 90)
        super().__init__(iterable, *args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self._kernel:
            self._show(self.__str__() if msg is None else msg)
        elif not self._log_path:
            return super().display(msg, pos)
        finished = self.total is not None and self.n >= self.total
        if not self.disable and not finished:  # close() logs the final line itself
            self._log()
        return True

    def _show(self, text: str) -> None:
        from IPython.display import display

        bundle = {"text/plain": text}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def _log(self, final: bool = False) -> None:
        if not self._log_path:
            return
        now = time.monotonic()
        if not final and self._last_log is not None and now - self._last_log < self._every_s:
            return
        self._last_log = now
        try:
            with open(self._log_path, "a", encoding="utf-8") as log:
                log.write(self.log_line(final) + "\n")
        except OSError:
            self._log_path = None  # the runner's log is gone (the run ended): stop reporting, keep working

    def log_line(self, final: bool = False) -> str:
        """`think: 12/40 chunk (30%) in 1 min 40 s, 0.12 chunk/s, about 3 min 50 s left`; `... started` before the
        first step, `... done in ...` at the end."""
        d = self.format_dict
        n, total, elapsed, unit = d["n"], d["total"], d["elapsed"], d["unit"]
        rate = d["rate"] or ((n - d["initial"]) / elapsed if elapsed else None)
        count = f"{n}/{total}" if total else f"{n}"
        head = f"{d['prefix'] or 'progress'}: {count} {unit}"
        if total:
            head += f" ({100 * n / total:.0f}%)"
        speed = (f"{rate:.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 1 else f"{rate:.2g}") if rate else "?"
        speed += f" {unit}/s"
        if final:
            return f"{head} done in {format_seconds(elapsed)}, {speed}"
        if n == d["initial"]:
            return f"{head} started"
        left = (total - n) / rate if rate and total else None
        return f"{head} in {format_seconds(elapsed)}, {speed}, about {format_seconds(left)} left"

    def close(self) -> None:
        if self.disable:
            return
        super().close()
        self._log(final=True)


def quiet_library_bars() -> None:
    """Turn off the progress bars transformers draws while loading weights, in a notebook kernel or a headless run:
    there they would be saved as a widget stuck at 0% (`Loading weights: 0%`). A terminal keeps them."""
    if in_kernel() or os.environ.get(LOG_ENV):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def progress_bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
                 initial: int = 0, disable: bool = False, **kwargs: Any) -> ProgressBar:
    """A progress bar for a long loop (a `tqdm`; use it as an iterable wrapper or with `update()`)."""
    return ProgressBar(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=disable, **kwargs)
