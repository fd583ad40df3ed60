"""The console logger of every run: Dagster's own, with failures shown by their cause instead of stack traces.

A rejected input used to print ~95 lines to the terminal (the step failure and the run failure, each with Dagster's
stack trace, and a line per skipped step) around a one-line reason. Here a failure's message stops before its
"Stack Trace:", and the lines saying a step was skipped because an upstream step failed are left out: the run's
summary lists what was not materialised. Nothing changes in the event log, which keeps every trace (the UI shows it).
"""

import logging

from dagster import Field, logger
from dagster._core.utils import coerce_valid_log_level
from dagster._utils.log import create_console_logger

#: What starts a stack trace in a Dagster failure message.
TRACE_MARKER = "\n\nStack Trace:"
#: How Dagster's message of a step skipped because an upstream step failed starts (the run summary names them).
SKIPPED_MARKER = "Dependencies for step "
POINTER = "  (full trace: the run's event log in the Dagster UI)"


class ShortFailures(logging.Formatter):
    """Formats with ``inner`` and cuts each message at its first stack trace."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's text, cut at the first stack trace."""
        text = self.inner.format(record)
        cut = text.find(TRACE_MARKER)
        return text if cut < 0 else text[:cut].rstrip() + "\n" + POINTER


def _not_a_skip(record: logging.LogRecord) -> bool:
    return SKIPPED_MARKER not in record.getMessage()


@logger(
    {"log_level": Field(str, is_required=False, default_value="INFO", description="The logger's threshold.")},
    description="Dagster's console logger, with failures shown by their cause (traces stay in the event log).",
)
def console_logger(init_context) -> logging.Logger:
    """Dagster's colored console logger with `ShortFailures` and no lines for skipped steps."""
    shown = create_console_logger("mmm_assets.console", coerce_valid_log_level(init_context.logger_config["log_level"]))
    for handler in shown.handlers:
        handler.setFormatter(ShortFailures(handler.formatter or logging.Formatter()))
        handler.addFilter(_not_a_skip)
    return shown
