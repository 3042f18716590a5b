"""`slack`: post a readable message to a Slack incoming webhook.

    *Jason Fried* completed a to-do <https://basecamp.com/...|Design it> in *BCX*

The webhook URL is the credential: it is a SecretStr (give `webhook_url`, or
`webhook_url_env` / `webhook_url_file`) and never appears in errors, logs or reprs. The
message comes from a Jinja2 template (`template` overrides the default, see
handlers/templates.py for the variables; use the `mrkdwn` filter to escape text) and is cut
to `max_length` characters, ending with "…".

Outcomes: 2xx delivered; 429 retried after Slack's Retry-After; 400/401/403/404/410 (bad
payload, invalid_token, channel_not_found, channel_is_archived, ...) dead-letter the event;
408, 5xx, 3xx (redirects are not followed), timeouts and network errors are retried.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers import _http
from handlers.base import HandlerContext, HandlerOptions
from handlers.templates import compile_template, default_source, event_context, render
from poller.config import is_unresolved, resolve_secret
from poller.errors import HandlerError, PermanentHandlerError

SLACK_TEXT_LIMIT = 40_000
_PERMANENT = {400, 401, 403, 404, 410, 413}


def _drop_partial_entity(text: str) -> str:
    amp = text.rfind("&")
    if amp > text.rfind(";") and len(text) - amp <= 8:
        return text[:amp]
    return text


def truncate_mrkdwn(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters ending in "…", never inside an `&...;`
    entity nor inside a `<url|label>` link: a link cut in its label keeps its URL and gets a
    shortened label; a link cut in its URL is dropped."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    opened = cut.rfind("<")
    if opened > cut.rfind(">"):
        bar = cut.find("|", opened)
        label = _drop_partial_entity(text[: limit - 2]).rstrip()
        if bar != -1 and len(label) > bar + 1:
            return label + "…>"
        cut = cut[:opened]
    return _drop_partial_entity(cut).rstrip() + "…"


class SlackOptions(HandlerOptions):
    model_config = ConfigDict(hide_input_in_errors=True)

    webhook_url: SecretStr = Field(description="Slack incoming-webhook URL (a credential)")
    template: str | None = Field(None, description="Jinja2 mrkdwn template for the text")
    timeout: float = Field(10, gt=0, description="seconds, connect and read")
    max_length: int = Field(3000, ge=100, le=SLACK_TEXT_LIMIT, description="text cap")

    @model_validator(mode="before")
    @classmethod
    def _secret_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        secret = resolve_secret(data, "webhook_url")
        for key in ("webhook_url_env", "webhook_url_file"):
            data.pop(key, None)
        if secret is not None:
            data["webhook_url"] = secret
        return data

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        if is_unresolved(value):  # a local command did not read it
            return value
        _http.check_http_url(value.get_secret_value())
        return SecretStr(value.get_secret_value().strip())

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value)
        return value


class SlackHandler:
    Options = SlackOptions

    def __init__(self, options: SlackOptions, context: HandlerContext) -> None:
        self.options = options
        self.name = context.name
        source = options.template if options.template is not None else default_source("slack.txt")
        self._template = compile_template(source)
        self._url = options.webhook_url.get_secret_value()
        import httpx  # only once a handler is built: `check` validates options without it

        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(options.timeout), follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"SlackHandler(name={self.name!r})"

    def message(self, event: dict[str, Any]) -> dict[str, Any]:
        """The JSON payload for one event. Raises ValueError if the template fails."""
        text = render(self._template, event_context(event)).strip()
        if not text:
            raise ValueError("the template rendered an empty message")
        text = truncate_mrkdwn(text, self.options.max_length)
        return {"text": text, "unfurl_links": False, "unfurl_media": False}

    async def probe(self) -> str:
        """Connect (and shake hands) with Slack, sending nothing."""
        try:
            return await _http.probe_url(self._url, self.options.timeout)
        except HandlerError as exc:
            raise HandlerError(self._scrub(str(exc))) from None

    def preview(self, event: dict[str, Any]) -> str:
        """The JSON `deliver` would POST, without posting it (the webhook URL is a
        credential: not shown). Raises ValueError if the template fails."""
        payload = json.dumps(self.message(event), indent=2, ensure_ascii=False)
        return f"POST <the Slack incoming webhook_url>\ncontent-type: application/json\n\n{payload}"

    def _scrub(self, text: str) -> str:
        """Remove any trace of the webhook URL (the credential) from a message."""
        path = urlsplit(self._url).path
        text = text.replace(self._url, "<webhook_url>")
        return text.replace(path, "/***") if len(path) > 1 else text

    async def deliver(self, event: dict[str, Any]) -> None:
        where = f"slack {self.name}"
        try:
            payload = self.message(event)
        except ValueError as exc:
            raise PermanentHandlerError(f"{where}: {exc}") from None
        body = json.dumps(payload, ensure_ascii=False).encode()
        import httpx

        try:
            reply = await _http.post(
                self._client,
                self._url,
                content=body,
                headers={"content-type": "application/json; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            detail = self._scrub(_http.describe_transport_error(exc))
            raise HandlerError(f"{where}: {detail}") from None
        status = reply.status
        if 200 <= status < 300:
            return
        detail = f"{where}: HTTP {status}"
        if reply.body:
            detail += f": {self._scrub(reply.text())}"
        if status == 429:
            retry_after = _http.parse_retry_after(reply.headers.get("retry-after"))
            raise HandlerError(f"{detail} (rate limited)", retry_after=retry_after)
        if status in _PERMANENT:
            raise PermanentHandlerError(detail)
        if 300 <= status < 400:
            raise HandlerError(f"{detail} (redirect not followed; check webhook_url)")
        retry_after = _http.parse_retry_after(reply.headers.get("retry-after"))
        raise HandlerError(detail, retry_after=retry_after)

    async def aclose(self) -> None:
        await self._client.aclose()
