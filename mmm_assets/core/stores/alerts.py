"""Alerts: what went wrong in an unattended run, kept in an append-only JSONL log and posted to a chat webhook.

Plain Python (no Dagster): the sensors in :mod:`mmm_assets.defs.alerts` and :mod:`mmm_assets.defs.sensors` build
:class:`Alert` records and call :func:`deliver`. The webhook URL is a secret: it is never logged and never part of an exception or a record; messages
name the environment variable that holds it instead.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from mmm_assets.core.config import MMMConfig

log = logging.getLogger(__name__)

AlertKind = Literal["blocking_check_failed", "check_failed", "run_failed", "landing_file_rejected"]

DEFAULT_WEBHOOK_ENV = "MMM_ALERT_WEBHOOK_URL"
#: Slack limits: header text 150 characters, section text 3,000.
_HEADER_MAX = 150
_SECTION_MAX = 3000
_TITLES: dict[str, str] = {
    "blocking_check_failed": "Blocking check failed",
    "check_failed": "Check failed",
    "run_failed": "Run failed",
    "landing_file_rejected": "Landing file rejected",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Alert:
    """One thing that needs a human: a failed check, a failed run or a rejected landing file."""

    kind: AlertKind
    message: str
    asset: str | None = None
    check: str | None = None
    value: float | None = None
    threshold: float | None = None
    severity: str = "ERROR"
    run_id: str | None = None
    run_url: str | None = None
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.kind not in _TITLES:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {', '.join(_TITLES)}")

    @property
    def title(self) -> str:
        """E.g. "Blocking check failed: mmm_validation:min_ess_bulk"."""
        subject = ":".join(part for part in (self.asset, self.check) if part)
        return f"{_TITLES[self.kind]}: {subject}" if subject else _TITLES[self.kind]

    def as_dict(self) -> dict:
        """The record as strict JSON types (a NaN or infinite value becomes null)."""
        out = asdict(self)
        for key in ("value", "threshold"):
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = None
        return out


@dataclass(frozen=True)
class Delivery:
    """What :func:`send` did with one alert."""

    logged_to: Path
    posted: bool
    webhook_error: str | None = None


class WebhookError(RuntimeError):
    """The webhook did not accept an alert. The message never contains the URL."""


def fmt_number(number: float | None) -> str:
    """A number for people: 4 significant digits, "n/a" when missing or not finite."""
    return "n/a" if number is None or not math.isfinite(number) else f"{number:.4g}"


def _escape(text: str) -> str:
    """Text as Slack mrkdwn shows it literally (``&``, ``<`` and ``>`` are control characters there)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict:
    """A Slack-compatible message: a plain ``text`` fallback, then a header, the facts, the message and run link."""
    has_numbers = alert.value is not None or alert.threshold is not None
    numbers = f"{fmt_number(alert.value)} vs {fmt_number(alert.threshold)}"
    facts = [
        *([f"*Asset*\n{_escape(alert.asset)}"] if alert.asset else []),
        *([f"*Check*\n{_escape(alert.check)}"] if alert.check else []),
        *([f"*Value vs threshold*\n{numbers}"] if has_numbers else []),
        f"*Severity*\n{alert.severity}",
        f"*Run*\n<{alert.run_url}|{(alert.run_id or 'open')[:8]}>" if alert.run_url else "*Run*\nnone",
    ]
    message = _escape(alert.message) or "(no message)"
    if len(message) > _SECTION_MAX:
        message = message[: _SECTION_MAX - 3] + "..."
    text = alert.title + (f" (value vs threshold: {numbers})" if has_numbers else "")
    return {
        "text": text + (f" {alert.run_url}" if alert.run_url else ""),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": alert.title[:_HEADER_MAX]}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": fact} for fact in facts]},
            {"type": "section", "text": {"type": "mrkdwn", "text": message}},
        ],
    }


def _describe(err: Exception, timeout_s: float) -> str:
    """A failed POST described from safe parts only: urllib and http.client messages may quote the URL."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return f"{type(reason).__name__}: {reason.strerror}"
    return type(reason).__name__ if isinstance(reason, BaseException) else type(err).__name__


def _retriable(err: Exception) -> bool:
    """Connection errors, timeouts, HTTP 429 and 5xx may pass on a second try; a bad URL or a 4xx will not."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code == 429 or err.code >= 500
    return not isinstance(err, (ValueError, http.client.InvalidURL))


def post_webhook(
    url: str,
    payload: dict,
    timeout_s: float = 5,
    attempts: int = 3,
    *,
    backoff_s: float = 0.5,
    webhook_env: str = DEFAULT_WEBHOOK_ENV,
) -> None:
    """POST ``payload`` as JSON, retrying transient failures with a doubling backoff; raise :class:`WebhookError`."""
    where = f"the webhook in ${webhook_env}"
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    try:
        scheme = urllib.parse.urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in {"http", "https"}:
        raise WebhookError(f"{where} is not an http(s) URL; set it to the https:// address of the webhook")
    body = json.dumps(payload, allow_nan=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8"}
    for attempt in range(1, attempts + 1):
        try:
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            return
        except (OSError, ValueError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
            problem, retry = _describe(err, timeout_s), _retriable(err)
        if not retry or attempt == attempts:
            break
        log.warning("posting an alert to %s failed (%s); attempt %d of %d next", where, problem, attempt + 1, attempts)
        time.sleep(backoff_s * 2 ** (attempt - 1))
    # Raised outside the except block, so the original exception (which may quote the URL) is not chained to it.
    raise WebhookError(f"posting the alert to {where} failed after {attempt} attempt(s): {problem}")


def append_jsonl(path: Path, alert: Alert) -> None:
    """Append the alert as one JSON line, in a single write to a file opened for appending, then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(alert.as_dict(), allow_nan=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: wrote {written} of {len(line)} bytes of an alert line")
        os.fsync(fd)
    finally:
        os.close(fd)


def send(
    alert: Alert, webhook_url: str | None, log_path: Path, *, webhook_env: str = DEFAULT_WEBHOOK_ENV
) -> Delivery:
    """Log the alert to ``log_path`` (always), then post it to the webhook when a URL is set.

    A webhook failure does not raise: it is returned in :attr:`Delivery.webhook_error`, so the other alerts of the
    same evaluation are still delivered, and the JSONL line is written whatever happens to the webhook.
    """
    append_jsonl(log_path, alert)
    if not webhook_url:
        return Delivery(logged_to=log_path, posted=False)
    try:
        post_webhook(webhook_url, slack_payload(alert), webhook_env=webhook_env)
    except WebhookError as err:
        return Delivery(logged_to=log_path, posted=False, webhook_error=str(err))
    return Delivery(logged_to=log_path, posted=True)


def deliver(log: logging.Logger | logging.LoggerAdapter, cfg: MMMConfig, alerts: Sequence[Alert]) -> list[str]:
    """Send every alert to the scenario's destinations (its JSONL log always, the webhook in the variable named by
    ``operations.alert_webhook_env`` when it is set); log and return the webhook errors."""
    env = cfg.operations.alert_webhook_env
    url = os.environ.get(env) or None
    errors = []
    for alert in alerts:
        done = send(alert, url, cfg.paths.alerts_log, webhook_env=env)
        posted = f", posted to the webhook in ${env}" if done.posted else ""
        log.info(f"alert {alert.title}: logged to {done.logged_to}{posted}")
        if done.webhook_error:
            log.error(done.webhook_error)
            errors.append(done.webhook_error)
    return errors
