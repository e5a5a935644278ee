"""Logging for rule scripts: everything, tracebacks included, goes to the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def logged(log_path: str | None, name: str) -> Iterator[logging.Logger]:
    """Send logging and uncaught errors of the block to ``log_path`` (and stderr)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    try:
        yield logger
    except BaseException:
        logger.error("failed:\n%s", traceback.format_exc())
        raise
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
