"""The runs' console: one line per message, so a failed step reads as one line, not a stack trace.

Dagster's default console logger prints a failed step's whole error (two stack traces for one
failure). The event log keeps every error in full for the UI and the alerts; the console shows the
first line of each message and says where the rest is.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg


class FirstLineFormatter(logging.Formatter):
    """``time - level - run - step - first line of the message``, and a pointer to the rest."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        first, _, rest = text.partition("\n")
        return f"{first} (full error in the run's event log)" if rest.strip() else first


def _not_optional_output_notice(record: logging.LogRecord) -> bool:
    """Dagster's notice that a step left optional outputs out: the day steps do on purpose (each
    day's results are runtime events), so it says nothing to an operator."""
    return "did not yield or return expected outputs" not in record.getMessage()


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO")},
    description="One line per message on stderr (errors in full in the run's event log).",
)
def console(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("sales_platform", level=init_context.logger_config["log_level"].upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FirstLineFormatter("%(asctime)s - %(levelname)s - %(message)s"))
    handler.addFilter(_not_optional_output_notice)
    logger.addHandler(handler)
    return logger
