"""`slack`: post a readable message to Slack, by an incoming webhook or by the Web API.

    *Jason Fried* completed a to-do <https://basecamp.com/...|Design it> in *BCX*

Two modes, exactly one of:

* `webhook_url` (an incoming webhook): one top-level message per event.
* `token` (a bot token, `chat:write`) and `channel`: the Web API's `chat.postMessage`
  (`api_url`, default https://slack.com/api). The first event about a Basecamp item (the
  envelope's account_id + recording type + id; a comment's recording is the item it is on)
  posts a parent message; later events about the same item reply in its thread
  (`thread_ts`), also shown in the channel (`reply_broadcast: true`) when their kind
  matches a `reply_broadcast` glob. The thread map is durable (see handlers/_slack_threads.py),
  so threads survive a restart. A crash between Slack's answer and the map's commit posts
  the parent again on redelivery (at least once, like every delivery). A reply Slack
  refuses because the parent is gone (deleted in Slack: `thread_not_found`, or
  `message_not_found`) is posted as a new parent instead, which becomes the item's thread.
* `mention` (with `token`): "assignee", "creator" and/or "subscribers" of the item (see
  handlers/_recipients.py) are @-mentioned (`mentions` in the template; the default puts
  them at the end of the first line). Each person's e-mail address comes from the people
  the poller stores, their Slack user from `users.lookupByEmail` (scope
  `users:read.email`), cached in memory and in the thread map's file (a week; an address
  Slack did not know is asked about again after an hour, in memory only). Mentions
  never hold a message back: a person who cannot be mentioned (not stored, no address,
  `users_not_found`, a deactivated Slack user) is left out, with one warning per person
  per run. Errors of the look-up itself are those of the Web API below (a missing scope
  dead-letters with its reason).

The webhook URL and the token are credentials: SecretStr (or `*_env` / `*_file`), never in
errors, logs or reprs. The message comes from a Jinja2 template (`template` overrides the
default, see handlers/templates.py for the variables; use the `mrkdwn` filter to escape
text) and is cut to `max_length` characters, ending with "…"; a reply has the same text.

Outcomes (webhook): 2xx delivered; 429 retried after Slack's Retry-After;
400/401/403/404/410 (bad payload, invalid_token, channel_not_found, channel_is_archived, ...)
dead-letter the event; 408, 5xx, 3xx (redirects are not followed), timeouts and network
errors are retried.

Outcomes (Web API): `{"ok": true}` delivered; HTTP 429 or `ratelimited` retried after
Retry-After; `channel_not_found`, `not_in_channel`, `invalid_auth`, `account_inactive`,
`token_revoked` (and `not_authed`, `token_expired`, `missing_scope`, `is_archived`)
dead-letter with that reason; any other `ok: false` is retried with Slack's error; HTTP
statuses as for the webhook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers import _http
from handlers._recipients import ROLES, Role, resolve
from handlers._slack_threads import Key, ThreadMap, threads_path
from handlers.base import HandlerContext, HandlerOptions
from handlers.templates import compile_template, default_source, event_context, render
from poller.config import is_unresolved, resolve_secret
from poller.errors import HandlerError, PermanentHandlerError

SLACK_TEXT_LIMIT = 40_000
_PERMANENT = {400, 401, 403, 404, 410, 413}
DEFAULT_API_URL = "https://slack.com/api"
# Web API errors that no retry can cure: dead-letter with the reason
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "not_authed",
        "token_expired",
        "missing_scope",
        "is_archived",
    }
)
RATE_LIMITED_ERRORS = frozenset({"ratelimited", "rate_limited"})
# chat.postMessage with a `thread_ts` whose parent is gone: start a new thread
THREAD_GONE_ERRORS = frozenset({"thread_not_found", "message_not_found"})
# seconds before an address Slack did not know is looked up again
UNKNOWN_USER_AGE = 3600.0
# users.lookupByEmail: nobody in the workspace has that address
USER_NOT_FOUND_ERRORS = frozenset({"users_not_found", "user_not_found"})


class _ThreadGone(HandlerError):
    """Slack refused a reply: the thread's parent is gone."""


log = logging.getLogger(__name__)


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

    webhook_url: SecretStr | None = Field(
        None, description="Slack incoming-webhook URL (a credential); or token + channel"
    )
    token: SecretStr | None = Field(
        None, description="Slack bot token for the Web API (a credential); or webhook_url"
    )
    channel: str | None = Field(None, min_length=1, description="channel id or #name (token)")
    api_url: str = Field(DEFAULT_API_URL, description="Slack Web API base URL (token)")
    reply_broadcast: tuple[str, ...] = Field(
        (), description="kind globs whose thread replies are also shown in the channel (token)"
    )
    mention: tuple[Role, ...] = Field(
        (),
        description='"assignee", "creator", "subscribers" of the item to @-mention (token)',
    )
    template: str | None = Field(None, description="Jinja2 mrkdwn template for the text")
    timeout: float = Field(10, gt=0, description="seconds, connect and read")
    max_length: int = Field(3000, ge=100, le=SLACK_TEXT_LIMIT, description="text cap")

    @model_validator(mode="before")
    @classmethod
    def _secret_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("webhook_url", "token"):
            secret = resolve_secret(data, name)
            for key in (f"{name}_env", f"{name}_file"):
                data.pop(key, None)
            if secret is not None:
                data[name] = secret
        given = [k for k in ("webhook_url", "token") if data.get(k) not in (None, "")]
        if len(given) == 2:
            raise ValueError(
                "give either webhook_url (an incoming webhook) or token (the Web API, with"
                " channel), not both"
            )
        if not given:
            raise ValueError(
                "webhook_url or token is required: webhook_url (or webhook_url_env /"
                " webhook_url_file) for an incoming webhook, token (or token_env /"
                " token_file) and channel for the Web API with threads"
            )
        return data

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or is_unresolved(value):  # a local command did not read it
            return value
        _http.check_http_url(value.get_secret_value())
        return SecretStr(value.get_secret_value().strip())

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or is_unresolved(value):
            return value
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("is empty")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise ValueError("must be one word of printable characters (a Slack bot token)")
        return SecretStr(token)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _http.check_http_url(value).rstrip("/")

    @field_validator("mention", mode="before")
    @classmethod
    def _one_mention(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list | tuple):
            unknown = [v for v in value if v not in ROLES]
            if unknown:
                raise ValueError(f"unknown {unknown[0]!r}; known: {', '.join(ROLES)}")
            return list(dict.fromkeys(value))
        return value

    def needs_watch(self) -> dict[str, str]:
        """Setting -> the `[poller] watch` entry it needs (checked with the config)."""
        return {"mention": "people"} if self.mention else {}

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value)
        return value

    @model_validator(mode="after")
    def _mode(self) -> SlackOptions:
        if self.token is not None and self.channel is None:
            raise ValueError("channel is required with token (a channel id, or #name)")
        if self.webhook_url is not None:
            if self.channel is not None:
                raise ValueError("channel goes with token; an incoming webhook has its own")
            if self.reply_broadcast:
                raise ValueError("reply_broadcast goes with token (threads need the Web API)")
            if self.api_url != DEFAULT_API_URL:
                raise ValueError("api_url goes with token (the Web API)")
            if self.mention:
                raise ValueError("mention goes with token (users.lookupByEmail is the Web API)")
        return self


class SlackHandler:
    Options = SlackOptions

    def __init__(self, options: SlackOptions, context: HandlerContext) -> None:
        self.options = options
        self.name = context.name
        source = options.template if options.template is not None else default_source("slack.txt")
        self._template = compile_template(source)
        self._url = options.webhook_url.get_secret_value() if options.webhook_url else ""
        self._token = options.token.get_secret_value() if options.token else ""
        self._people = context.people
        self._users: dict[str, str] = {}  # e-mail (lower case) -> Slack user id
        self._unknown: dict[str, float] = {}  # e-mail (lower case) -> when Slack said no
        self._warned: set[str] = set()
        self._threads: ThreadMap | None = None
        if options.token is not None:
            assert options.channel is not None  # the Options check it
            self._threads = ThreadMap(
                threads_path(context.state_dir, context.name), context.name, options.channel
            )
        import httpx  # only once a handler is built: `check` validates options without it

        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(options.timeout), follow_redirects=False
        )

    def __repr__(self) -> str:
        mode = "web api" if self._token else "webhook"
        return f"SlackHandler(name={self.name!r}, mode={mode!r})"

    def _text(self, event: dict[str, Any], mentions: str = "") -> str:
        context = event_context(event)
        context["mentions"] = mentions
        text = render(self._template, context).strip()
        if not text:
            raise ValueError("the template rendered an empty message")
        return truncate_mrkdwn(text, self.options.max_length)

    def message(self, event: dict[str, Any], mentions: str = "") -> dict[str, Any]:
        """The JSON payload for one event (Web API mode: a parent message, with `channel`),
        `mentions` ("<@U…> <@U…>") for the template. Raises ValueError if the template
        fails."""
        payload: dict[str, Any] = {
            "text": self._text(event, mentions),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if self._token:
            payload = {"channel": self.options.channel, **payload}
        return payload

    def reply(
        self, event: dict[str, Any], channel_id: str, thread_ts: str, mentions: str = ""
    ) -> dict[str, Any]:
        """The chat.postMessage payload of a reply in the thread `thread_ts`."""
        payload = {**self.message(event, mentions), "channel": channel_id, "thread_ts": thread_ts}
        kind = str(event.get("kind") or "")
        if any(fnmatchcase(kind, glob) for glob in self.options.reply_broadcast):
            payload["reply_broadcast"] = True
        return payload

    async def probe(self) -> str:
        """Webhook: connect (and shake hands) with Slack, sending nothing. Web API: call
        auth.test with the token (posts nothing)."""
        if self._token:
            answer = await self._call("auth.test", {}, where=f"slack {self.name}: auth.test")
            who = answer.get("user") or answer.get("bot_id") or "?"
            team = answer.get("team") or "?"
            return f"token accepted by {self.options.api_url}: {who} in {team}, posted nothing"
        try:
            return await _http.probe_url(self._url, self.options.timeout)
        except HandlerError as exc:
            raise HandlerError(self._scrub(str(exc))) from None

    def preview(self, event: dict[str, Any]) -> str:
        """The JSON `deliver` would POST, without posting it (the webhook URL and the
        token are credentials: not shown). Raises ValueError if the template fails."""
        payload = json.dumps(self.message(event), indent=2, ensure_ascii=False)
        if self._token:
            return (
                f"POST {self.options.api_url}/chat.postMessage\n"
                "authorization: Bearer <the token>\n"
                "content-type: application/json; charset=utf-8\n\n"
                f"{payload}\n\n"
                "(the first event about an item; later ones reply in its thread with the same"
                " text and thread_ts, reply_broadcast for kinds listed in reply_broadcast)"
                + (
                    f"\n(with the item's {', '.join(self.options.mention)} @-mentioned, looked"
                    " up when it is delivered)"
                    if self.options.mention
                    else ""
                )
            )
        return f"POST <the Slack incoming webhook_url>\ncontent-type: application/json\n\n{payload}"

    def _scrub(self, text: str) -> str:
        """Remove any trace of the webhook URL or the token (the credentials) from a message."""
        if self._token:
            return text.replace(self._token, "<token>")
        path = urlsplit(self._url).path
        text = text.replace(self._url, "<webhook_url>")
        return text.replace(path, "/***") if len(path) > 1 else text

    async def deliver(self, event: dict[str, Any]) -> None:
        if self._threads is not None:
            await self._deliver_threaded(event, self._threads)
            return
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
        self._raise_for_status(reply, where)

    def _raise_for_status(self, reply: _http.Reply, where: str) -> None:
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
            what = "api_url" if self._token else "webhook_url"
            raise HandlerError(f"{detail} (redirect not followed; check {what})")
        retry_after = _http.parse_retry_after(reply.headers.get("retry-after"))
        raise HandlerError(detail, retry_after=retry_after)

    # -- the Web API ----------------------------------------------------------------------

    @staticmethod
    def _key(event: dict[str, Any]) -> Key | None:
        """What identifies the item an event is about, or None (then: no thread)."""
        recording = event.get("recording")
        if not isinstance(recording, dict):
            return None
        account, rtype, rid = event.get("account_id"), recording.get("type"), recording.get("id")
        if account in (None, "") or rtype in (None, "") or rid in (None, ""):
            return None
        return (str(account), str(rtype), str(rid))

    async def _deliver_threaded(self, event: dict[str, Any], threads: ThreadMap) -> None:
        where = f"slack {self.name}"
        key = self._key(event)
        thread: tuple[str, str] | None = None
        if key is not None:
            try:  # before posting: an unusable map fails the delivery, not the thread
                thread = await asyncio.to_thread(threads.get, key)
            except (OSError, sqlite3.Error) as exc:
                raise HandlerError(
                    f"{where}: cannot read the thread map {threads.path}: {exc}"
                ) from None
        mentions = await self._mentions(event, threads)
        try:
            payload = (
                self.message(event, mentions)
                if thread is None
                else self.reply(event, *thread, mentions)
            )
        except ValueError as exc:
            raise PermanentHandlerError(f"{where}: {exc}") from None
        gone: tuple[str, str] | None = None
        try:
            answer = await self._call("chat.postMessage", payload, where=where)
        except _ThreadGone as exc:
            assert thread is not None
            log.warning(
                "slack %s: the thread %s of %s is gone (%s): posting a new parent",
                self.name,
                thread[1],
                key,
                str(exc).rpartition(": ")[2],
            )
            gone, thread = thread, None
            answer = await self._call(
                "chat.postMessage", self.message(event, mentions), where=where
            )
        if thread is not None or key is None:
            return
        ts, channel_id = answer.get("ts"), answer.get("channel") or self.options.channel
        if not isinstance(ts, str) or not ts or not isinstance(channel_id, str):
            log.warning("slack %s: chat.postMessage answered no ts: no thread for it", self.name)
            return
        try:
            if gone is not None:
                await asyncio.to_thread(threads.replace, key, gone[1], channel_id, ts)
            else:
                await asyncio.to_thread(threads.put, key, channel_id, ts)
        except (OSError, sqlite3.Error) as exc:  # posted: a retry would post it twice
            log.warning(
                "slack %s: posted, but the thread map %s was not written (%s): the next event"
                " about this item starts a new thread",
                self.name,
                threads.path,
                exc,
            )

    # -- mentions ---------------------------------------------------------------------------

    def _warn_once(self, what: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("slack %s: not mentioned: %s", self.name, what)

    async def _mentions(self, event: dict[str, Any], threads: ThreadMap) -> str:
        """`<@U…>` of each person `mention` names that Slack knows, space-separated."""
        if not self.options.mention:
            return ""
        where = f"slack {self.name}"
        try:
            found = await asyncio.to_thread(resolve, event, self.options.mention, self._people)
        except (OSError, sqlite3.Error) as exc:
            raise HandlerError(f"{where}: cannot read the stored people: {exc}") from None
        for problem in found.problems:
            self._warn_once(problem)
        out: list[str] = []
        for person in found.people:
            assert person.email is not None  # resolve() keeps only people with one
            user = await self._slack_user(person.email, threads)
            if user is None:
                self._warn_once(
                    f"{person.name} (person {person.id}): no Slack user has {person.email}"
                )
            elif f"<@{user}>" not in out:
                out.append(f"<@{user}>")
        return " ".join(out)

    async def _slack_user(self, email: str, threads: ThreadMap) -> str | None:
        """The Slack user id of `email`: cached in memory, then in the thread map's file,
        else `users.lookupByEmail` (None: nobody in Slack has it)."""
        key = email.lower()
        if key in self._users:
            return self._users[key]
        if time.monotonic() - self._unknown.get(key, -UNKNOWN_USER_AGE) < UNKNOWN_USER_AGE:
            return None
        try:
            cached = await asyncio.to_thread(threads.user, key)
        except (OSError, sqlite3.Error) as exc:
            log.warning("slack %s: cannot read the user cache %s: %s", self.name, threads.path, exc)
            cached = None
        if cached is not None:
            self._users[key] = cached
            return cached
        where = f"slack {self.name}: users.lookupByEmail"
        try:
            answer = await self._call(
                "users.lookupByEmail", {"email": email}, where=where, form=True
            )
        except PermanentHandlerError as exc:
            if str(exc).rpartition(": ")[2] == "missing_scope":
                raise PermanentHandlerError(
                    f"{exc} (mention needs the bot token scope users:read.email)"
                ) from None
            raise
        except HandlerError as exc:
            if str(exc).rpartition(": ")[2] not in USER_NOT_FOUND_ERRORS:
                raise
            answer = {}
        user = answer.get("user") if isinstance(answer.get("user"), dict) else {}
        uid = user.get("id") if isinstance(user, dict) and not user.get("deleted") else None
        if not isinstance(uid, str) or not uid:
            self._unknown[key] = time.monotonic()  # not kept: they may join Slack later
            return None
        self._users[key] = uid
        try:
            await asyncio.to_thread(threads.put_user, key, uid)
        except (OSError, sqlite3.Error) as exc:
            log.warning(
                "slack %s: cannot write the user cache %s: %s", self.name, threads.path, exc
            )
        return uid

    async def _call(
        self, method: str, payload: dict[str, Any], *, where: str, form: bool = False
    ) -> dict[str, Any]:
        """POST a Web API method (a JSON body, or a form when `form`); the answer when
        `ok`, else the error the dispatcher needs."""
        import httpx

        if form:
            body = urlencode(payload).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body = json.dumps(payload, ensure_ascii=False).encode()
            content_type = "application/json; charset=utf-8"
        try:
            reply = await _http.post(
                self._client,
                f"{self.options.api_url}/{method}",
                content=body,
                headers={"content-type": content_type, "authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            detail = self._scrub(_http.describe_transport_error(exc))
            raise HandlerError(f"{where}: {detail}") from None
        retry_after = _http.parse_retry_after(reply.headers.get("retry-after"))
        try:
            answer = json.loads(reply.body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self._raise_for_status(reply, where)  # an error status says more than the body
            raise HandlerError(f"{where}: not a Slack Web API answer: {self._scrub(reply.text())}")
        if reply.status != 429 and not 200 <= reply.status < 300:
            self._raise_for_status(reply, where)
        if answer.get("ok") is True and reply.status != 429:
            return answer
        error = self._scrub(" ".join(str(answer.get("error") or "not ok").split())[:200])
        if reply.status == 429 or error in RATE_LIMITED_ERRORS:
            raise HandlerError(f"{where}: {error} (rate limited)", retry_after=retry_after)
        if error in PERMANENT_ERRORS:
            raise PermanentHandlerError(f"{where}: {error}")
        if error in THREAD_GONE_ERRORS and "thread_ts" in payload:
            raise _ThreadGone(f"{where}: {error}")
        raise HandlerError(f"{where}: {error}", retry_after=retry_after)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._threads is not None:
            self._threads.close()
