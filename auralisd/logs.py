"""Logging to stderr in a journald-friendly form.

Under systemd (``$JOURNAL_STREAM`` set) each line is ``<N>logger: message`` with the syslog
priority ``N`` and no timestamp (journald adds its own). On a terminal the line starts with
the time and the level name. One line per notable event; expected failures are logged as
one sentence, without a traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Final

PLAN_LOGGER: Final = "auralis.plan"  # the DSP library's decision lines (auralis/plan.py)

# syslog priorities (RFC 5424) that sd-daemon(3) prefixes understand.
_SYSLOG_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


# What would make one event more than one line, or not text: control characters (a line break in a
# file name) and lone surrogates (the bytes of a file name that are not UTF-8, PEP 383).
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f\udc80-\udcff]")


def printable(text: str) -> str:
    """``text`` on one line: control characters and non-UTF-8 bytes of file names as ``\\xHH``.

    The same ``\\xHH`` a client prints for such a name (docs/protocol.md, "Paths"), so a path
    copied from the log names its file; a name holding a line break no longer splits its event.
    """
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02X}", text)


class PrintableFormatter(logging.Formatter):
    """Every message on one line (:func:`printable`); a traceback after it keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JournalFormatter(PrintableFormatter):
    """``<N>name: message`` lines (sd-daemon(3) level prefixes, no timestamp)."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def setup_logging(level: int, *, stream=None) -> None:
    """Configure the root logger once for the daemon process (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The player logs each decision once, with its track (auralisd.player); auralis.plan's own
    # lines (3 to 5 for every plan: each preset or intensity change, each private session, each
    # album) made up most of a day's log. They stay available at debug level.
    logging.getLogger(PLAN_LOGGER).setLevel(logging.NOTSET if level <= logging.DEBUG else logging.WARNING)


class RefusalLog:
    """Counts refused connections and logs at most one warning per ``interval_s`` with the count.

    A client that keeps connecting over a limit then costs one log line per interval, not one
    per attempt.
    """

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._what = what
        self._interval_s = interval_s
        self._count = 0
        self._last = -float("inf")

    def refused(self) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._logger.warning("%s; refused %d since the last report", self._what, self._count)
            self._last = now
            self._count = 0
