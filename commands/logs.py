"""Logging: what the engine says, under named loggers, and how a process ships it.

The library only *emits*, through the standard `logging` module, under loggers named
`escrow.*` (`escrow.commands`, `escrow.deadlines`, `escrow.store`, `escrow.projections`,
`escrow.relay`, `escrow.http`, `escrow.http.access`); it never configures logging on import, so
a backend that embeds it keeps its own handlers and formats. The CLI's processes configure it
here, from `ESCROW_LOG_FORMAT` (`text` or `json`) and `ESCROW_LOG_LEVEL`.

The facts of a line (command, refs, code, ...) travel as `extra=` fields: `JsonFormatter` writes
them as keys of one JSON object per line, ready for a log shipper; the text format keeps the
message alone, which already names them. A backend wanting the same JSON puts a
`JsonFormatter` on its own handler.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from escrow.errors import ValidationError
from escrow.store import mask

FORMAT_ENV, LEVEL_ENV = "ESCROW_LOG_FORMAT", "ESCROW_LOG_LEVEL"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Attributes every LogRecord has: whatever else a record carries came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message` and each
    `extra=` field as a key of its own. Messages pass through escrow.store.mask, so a store URL
    or driver message that slipped into one never shows its password."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    """The text format, passwords masked like JsonFormatter's."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is written (not when configured), so a
    process (or a test runner) that swaps stderr never leaves the handler on a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def settings(
    format: str | None = None, level: str | None = None, default_level: str = "INFO"
) -> tuple[str, str]:
    """(format, level): the arguments, else ESCROW_LOG_FORMAT / ESCROW_LOG_LEVEL, else text /
    `default_level`; a value logging cannot take is a ValidationError naming the variable."""
    chosen = (format or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValidationError(f"{FORMAT_ENV}: {chosen!r} is not one of {', '.join(FORMATS)}")
    named = (level or os.environ.get(LEVEL_ENV) or default_level).strip().upper()
    if named not in LEVELS:
        raise ValidationError(f"{LEVEL_ENV}: {named!r} is not one of {', '.join(LEVELS)}")
    return chosen, named


def formatter(format: str) -> logging.Formatter:
    return JsonFormatter() if format == "json" else MaskingFormatter(TEXT_FORMAT)


def configure(default_level: str = "INFO") -> None:
    """Send the `escrow` loggers to stderr in the format and level of the environment (level
    `default_level` if it names none); called by the CLI's entry points, never on import.
    The root logger is left alone: the process may log other things its own way."""
    chosen, named = settings(default_level=default_level)
    handler = StderrHandler()
    handler.setFormatter(formatter(chosen))
    logger = logging.getLogger("escrow")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(named)
    logger.propagate = False


def dict_config(format: str | None = None, level: str | None = None) -> dict[str, Any]:
    """`configure` as a `logging.config.dictConfig` dictionary, for uvicorn (which applies it in
    every worker process of `serve --workers N`): the escrow and uvicorn loggers alike."""
    chosen, named = settings(format, level)
    factory = (
        "escrow.commands.logs.JsonFormatter"
        if chosen == "json"
        else "escrow.commands.logs.MaskingFormatter"
    )
    shown = {"()": factory} if chosen == "json" else {"()": factory, "fmt": TEXT_FORMAT}
    logger = {"handlers": ["stderr"], "level": named, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"escrow": shown},
        "handlers": {"stderr": {"()": "escrow.commands.logs.StderrHandler", "formatter": "escrow"}},
        "loggers": {"escrow": logger, "uvicorn": logger},
    }
