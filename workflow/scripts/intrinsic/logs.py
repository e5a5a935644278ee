"""Logging for rule scripts: everything, tracebacks included, goes to the rule's log file.

Privacy rule: the log file lives under results/, which may be shared, so it never holds the
name of a source file (a path may carry a patient's name or id) nor a DICOM header value. Code
that names such a thing in a message registers it first with :func:`private`; the log file then
shows the registered token (e.g. ``<file #4 sha:0f6aa8646614c6fb>``) in its place, tracebacks
included, while stderr (the terminal, or the cluster's job log outside results/) shows the
message as is, so the user can still find the file.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

# Private text -> the token the log file shows instead. Only what a message names (skipped or
# failing files), so it stays small; it lives as long as the process, like the messages.
_PRIVATE: dict[str, str] = {}


def private(text: str, token: str) -> str:
    """Register ``text`` as private: log files show ``token`` in its place. Returns ``text``.

    Its quoted form (``repr``, as messages quote paths with ``!r``) is registered too, so the
    file shows the bare token rather than a quoted one, and escapes in the repr are covered.
    """
    text = str(text)
    if text:
        for variant in (text, repr(text), repr(text)[1:-1]):
            _PRIVATE[variant] = token
    return text


def redact(message: str) -> str:
    """``message`` with every registered private text replaced by its token.

    One pass over the message, longest text first at each position: a path is replaced whole
    before a registered part of it, and a token is never rewritten by a later replacement.
    """
    if not _PRIVATE:
        return message
    texts = sorted(_PRIVATE, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(text) for text in texts))
    return pattern.sub(lambda found: _PRIVATE[found.group(0)], message)


class RedactingFormatter(logging.Formatter):
    """The log file's formatter: the fully formatted record (traceback included), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc), or None where that is unknown."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22 is the start time in clock ticks after boot; the command name (field 2)
            # may hold spaces, so count from its closing parenthesis.
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return float(uptime.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def logged(log_path: str | None, name: str) -> Iterator[logging.Logger]:
    """Send logging and uncaught errors of the block to ``log_path`` (redacted) and stderr.

    The first line says how long the process ran before the block (interpreter start, imports:
    a job's fixed cost) and the last how long the block took (its work),
    benchmarks/bench_run_overhead.py reads both."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    layout = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(layout))
    handlers: list[logging.Handler] = [stderr]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_file = logging.FileHandler(log_path, mode="w")
        log_file.setFormatter(RedactingFormatter(layout))
        handlers.append(log_file)
    for handler in handlers:
        logger.addHandler(handler)
    # A rule script's process ends after this block. Freezing the heap at exit spares the
    # interpreter's final garbage collections over the million objects torch and torchvision
    # create: measured 0.9-1.2 s of every such job's 4.2 s of start and exit.
    atexit.unregister(gc.freeze)  # once per process, however many blocks
    atexit.register(gc.freeze)
    age = process_age()
    logger.info("started, %s", "process age unknown" if age is None else f"{age:.2f} s after the process")
    started = time.perf_counter()
    try:
        yield logger
        logger.info("finished in %.3f s", time.perf_counter() - started)
    except BaseException:
        logger.error("failed:\n%s", traceback.format_exc())
        raise
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
