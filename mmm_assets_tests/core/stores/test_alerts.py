"""Alerts: the Slack payload, the append-only JSONL log, and the webhook POST with retries that never leaks its URL."""

import json
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mmm_assets.core.stores.alerts import Alert, WebhookError, append_jsonl, post_webhook, send, slack_payload

#: Planted in every webhook URL; it must show up nowhere but in the request itself.
SECRET = "T0K3N-s3cr3t-do-not-leak"


class Webhook:
    """A webhook on 127.0.0.1 that records every POSTed JSON body and answers with the queued statuses, then 200."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                hook.paths.append(self.path)
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"
        # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's end
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def __enter__(self) -> "Webhook":
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/{SECRET}"


GATE = Alert(
    kind="blocking_check_failed", asset="mmm_validation", check="min_ess_bulk", value=3.8641, threshold=400.0,
    run_id="abc123", run_url="http://127.0.0.1:3000/runs/abc123", message="bulk ESS <too low> & more",
)
REJECTED = Alert(kind="landing_file_rejected", asset="marketing_spend", message="spend.csv: duplicate dates")


def test_slack_payload_names_asset_check_value_threshold_and_run_link():
    payload = slack_payload(GATE)
    assert set(payload) == {"text", "blocks"}
    assert "Blocking check failed: mmm_validation:min_ess_bulk" in payload["text"]
    assert "3.864 vs 400" in payload["text"] and GATE.run_url in payload["text"]
    header, facts, message = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": GATE.title}}
    texts = [f["text"] for f in facts["fields"]]
    assert texts == ["*Asset*\nmmm_validation", "*Check*\nmin_ess_bulk", "*Value vs threshold*\n3.864 vs 400",
                     "*Severity*\nERROR", "*Run*\n<http://127.0.0.1:3000/runs/abc123|abc123>"]
    assert message["text"]["text"] == "bulk ESS &lt;too low&gt; &amp; more"
    json.dumps(payload, allow_nan=False)


def test_slack_payload_without_numbers_or_run():
    texts = [f["text"] for f in slack_payload(REJECTED)["blocks"][1]["fields"]]
    assert texts == ["*Asset*\nmarketing_spend", "*Severity*\nERROR", "*Run*\nnone"]


def test_jsonl_log_appends_one_parseable_line_per_alert(tmp_path):
    path = tmp_path / "new" / "folder" / "alerts.jsonl"
    append_jsonl(path, GATE)
    first = path.read_bytes()
    append_jsonl(path, Alert(kind="check_failed", message="nan value", value=float("nan"), threshold=1.0))
    assert path.read_bytes().startswith(first)  # appended, never rewritten
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["blocking_check_failed", "check_failed"]
    assert lines[0] | {"created_at": None} == GATE.as_dict() | {"created_at": None}
    assert lines[0]["created_at"].endswith("+00:00")
    assert lines[1]["value"] is None and lines[1]["threshold"] == 1.0


def test_webhook_receives_the_payload(webhook):
    post_webhook(webhook.url, slack_payload(GATE))
    assert webhook.bodies == [slack_payload(GATE)]
    assert webhook.paths == [f"/services/{SECRET}"]


def test_webhook_retries_a_server_error_then_succeeds(webhook, caplog):
    caplog.set_level(logging.DEBUG)
    webhook.statuses = [500]
    post_webhook(webhook.url, {"text": "hello"}, backoff_s=0.01)
    assert webhook.bodies == [{"text": "hello"}] * 2
    assert "HTTP 500" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize(
    ("statuses", "url", "attempts", "expected"),
    [
        ([500, 502, 503], None, 3, "after 3 attempt(s): HTTP 503"),
        ([404], None, 1, "after 1 attempt(s): HTTP 404"),  # a client error is not retried
        ([], "closed", 3, "ConnectionRefusedError"),
        ([], f"http://127.0.0.1:1/services/{SECRET} with spaces", 1, "InvalidURL"),
        ([], f"hooks.example.com/services/{SECRET}", 0, "is not an http(s) URL"),
    ],
    ids=["server-errors", "client-error", "refused", "invalid-url", "no-scheme"],
)
def test_webhook_failure_never_reveals_the_url(webhook, caplog, statuses, url, attempts, expected):
    caplog.set_level(logging.DEBUG)
    webhook.statuses = statuses
    url = {None: webhook.url, "closed": _closed_port_url()}.get(url, url)
    with pytest.raises(WebhookError) as raised:
        post_webhook(url, {"text": "hello"}, backoff_s=0.01)
    text = str(raised.value)
    assert "the webhook in $MMM_ALERT_WEBHOOK_URL" in text and expected in text, text
    assert len(webhook.bodies) == (attempts if url == webhook.url else 0)
    shown = "".join(traceback.format_exception(raised.value)) + caplog.text
    assert SECRET not in shown and "127.0.0.1:" not in shown


def test_send_logs_always_and_posts_when_a_url_is_set(webhook, tmp_path):
    log = tmp_path / "alerts.jsonl"
    assert send(REJECTED, None, log).posted is False
    assert send(GATE, webhook.url, log).posted is True
    webhook.statuses = [400]
    failed = send(GATE, webhook.url, log, webhook_env="TEAM_HOOK")
    assert not failed.posted and "$TEAM_HOOK" in failed.webhook_error and SECRET not in failed.webhook_error
    assert len(log.read_text().splitlines()) == 3
    assert len(webhook.bodies) == 2
