"""`nats`: publish each event to a NATS JetStream stream (optional: `pip install
'bcx-poller[nats]'`, the nats-py client).

Each event is one message: the envelope as compact JSON (UTF-8), on the subject
`subject` renders to (default `bcx.{account_id}.{kind}`), with the headers
`Nats-Msg-Id` (the event id) and `Content-Type: application/json`. The publish names the
expected stream (`Nats-Expected-Stream: <stream>`), so a subject that lands in another
stream is an error rather than a message in the wrong place. Delivered = JetStream
acknowledged the message; an acknowledgement that says `duplicate` (the server had the
message id already: an earlier attempt was stored but its acknowledgement was lost, or the
delivery was requeued) counts as delivered too, and adds nothing to the stream.

JetStream drops a second message with the same `Nats-Msg-Id` only within the stream's
`duplicate_window`. So the handler checks at start-up that the stream exists and that its
window is at least the handler's longest retry span (`handlers._brokers.retry_span`:
from `max_attempts`, `retry_initial`, `retry_max`, `max_age` and `timeout`), and refuses to
start otherwise (a `ConfigError`: exit 2, naming the stream, its window and the span
needed). When no server answers at start-up (or reading the stream fails otherwise than
"no such stream"), the daemon starts anyway (the events wait in the outbox) and the same
check runs on the first connection: until it passes, deliveries fail and are retried, with
the reason as their error.

One connection, opened on the first delivery, without nats-py's reconnect loop: a lost
connection fails the delivery in flight (retried with the same id) and the next delivery
connects again. Credentials (`token`, `password`, a `.creds` file) never appear in logs or
errors; server URLs may not carry them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers import _brokers
from handlers.base import HandlerContext, HandlerOptions
from poller.config import HandlerSettings, is_unresolved, resolve_secret
from poller.errors import ConfigError, HandlerError
from poller.logs import mask_text

log = structlog.get_logger(__name__)

MISSING = "the nats handler needs the optional dependency: pip install 'bcx-poller[nats]'"
_SCHEMES = ("nats", "tls", "ws", "wss")


def _nats() -> Any:
    try:
        import nats
    except ImportError:
        return None
    return nats


class StreamMissing(HandlerError):
    """The server answered: there is no such stream (a configuration error at start-up;
    any other failure to read the stream may pass, and only defers the check)."""


class NatsOptions(HandlerOptions):
    model_config = ConfigDict(hide_input_in_errors=True)

    servers: tuple[str, ...] = Field(
        ("nats://127.0.0.1:4222",), min_length=1, description="nats:// or tls:// URLs"
    )
    stream: str = Field(min_length=1, description="the JetStream stream the subjects belong to")
    subject: str = Field("bcx.{account_id}.{kind}", description="subject template")
    token: SecretStr | None = Field(None, description="auth token (or token_env / token_file)")
    username: str | None = Field(None, min_length=1, description="user name (with password)")
    password: SecretStr | None = Field(None, description="password (or _env / _file)")
    creds_file: Path | None = Field(None, description="a NATS .creds file (JWT + NKey seed)")
    timeout: float = Field(5, gt=0, description="seconds: connect, and wait for each ack")

    @model_validator(mode="before")
    @classmethod
    def _secret_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("token", "password"):
            secret = resolve_secret(data, name)
            for key in (f"{name}_env", f"{name}_file"):
                data.pop(key, None)
            if secret is not None:
                data[name] = secret
        return data

    @model_validator(mode="after")
    def _one_auth(self) -> NatsOptions:
        if _nats() is None:
            raise ValueError(MISSING)
        given = [
            n
            for n, v in (
                ("token", self.token),
                ("username", self.username),
                ("creds_file", self.creds_file),
            )
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give only one of token, username, creds_file (got {given})")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, url in enumerate(value):
            try:
                parts = urlsplit(url.strip())
                _ = parts.port
            except ValueError:
                raise ValueError(f"servers[{index}] is not a valid URL") from None
            if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
                raise ValueError(
                    f"servers[{index}] must be a nats://, tls://, ws:// or wss:// URL with a host"
                )
            if parts.username or parts.password:
                raise ValueError(
                    f"servers[{index}] must not carry credentials: use token, username +"
                    " password, or creds_file (each with _env / _file forms for secrets)"
                )
        return tuple(u.strip() for u in value)

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if any(c in value for c in " \t\r\n.*>/\\"):
            raise ValueError(f"{value!r} is not a JetStream stream name")
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        _brokers.check_template(value)
        if any(c in value for c in " \t\r\n*>") or value.startswith(".") or value.endswith("."):
            raise ValueError(f"{value!r} is not a subject to publish to (no spaces or wildcards)")
        return value

    @field_validator("token", "password")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or is_unresolved(value):
            return value
        if not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @field_validator("creds_file")
    @classmethod
    def _creds(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        value = value.expanduser()
        if creds and not value.is_absolute():
            value = Path(creds) / value
        return value


class NatsHandler:
    Options = NatsOptions

    def __init__(self, options: NatsOptions, context: HandlerContext) -> None:
        if _nats() is None:  # validated at start-up; kept for callers that skip validation
            raise HandlerError(MISSING)
        self.options = options
        self.name = context.name
        self._nc: Any = None
        self._js: Any = None
        self.needed_window: float | None = None  # set by `start`: the retry span

    def __repr__(self) -> str:
        return f"NatsHandler(name={self.name!r}, stream={self.options.stream!r})"

    # -- connection --------------------------------------------------------------------

    def _where(self) -> str:
        return ", ".join(self.options.servers)

    async def _connect(self) -> Any:
        nats = _nats()
        o = self.options

        async def on_error(exc: Exception) -> None:
            log.debug("nats_client_error", handler=self.name, error=mask_text(str(exc)))

        kwargs: dict[str, Any] = {
            "servers": list(o.servers),
            "name": f"bcx-poller {self.name}",
            "connect_timeout": o.timeout,
            "allow_reconnect": False,
            # nats-py's first connect goes round the servers until each failed more than
            # max_reconnect_attempts times: 1 = twice each, 0.1 s apart, then NoServersError
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.1,
            "error_cb": on_error,
        }
        if o.token is not None:
            kwargs["token"] = o.token.get_secret_value()
        if o.username is not None and o.password is not None:
            kwargs["user"] = o.username
            kwargs["password"] = o.password.get_secret_value()
        if o.creds_file is not None:
            kwargs["user_credentials"] = str(o.creds_file)
        try:
            return await nats.connect(**kwargs)
        except Exception as exc:
            raise HandlerError(
                f"nats {self.name}: cannot connect to {self._where()}: {_describe(exc)}"
            ) from None

    async def _stream_window(self, js: Any) -> float:
        """The stream's duplicate window in seconds; HandlerError when it does not exist."""
        from nats.js.errors import NotFoundError

        try:
            info = await js.stream_info(self.options.stream)
        except NotFoundError:
            raise StreamMissing(
                f"nats {self.name}: stream {self.options.stream!r} does not exist on"
                f" {self._where()}"
            ) from None
        except Exception as exc:
            raise HandlerError(
                f"nats {self.name}: cannot read stream {self.options.stream!r}: {_describe(exc)}"
            ) from None
        return float(info.config.duplicate_window or 0)

    def window_problem(self, window: float) -> str | None:
        """Why a duplicate window of `window` seconds is too short, or None."""
        if self.needed_window is None or window >= self.needed_window:
            return None
        need = _brokers.human_seconds(self.needed_window)
        return (
            f"stream {self.options.stream!r} has a duplicate_window of"
            f" {_brokers.human_seconds(window)}, shorter than this handler's longest retry"
            f" span {need}: a retry after the window would add a second copy. Raise the"
            f" window (nats stream edit {self.options.stream} --dupe-window {need}) or"
            " shorten the retries (max_attempts, retry_max, max_age)"
        )

    async def _ready(self) -> Any:
        """The JetStream context of a live connection whose stream passed the check."""
        if self._nc is not None and not self._nc.is_closed and self._js is not None:
            return self._js
        await self._drop()
        nc = await self._connect()
        js = nc.jetstream(timeout=self.options.timeout)
        try:
            problem = self.window_problem(await self._stream_window(js))
        except BaseException:
            await _close(nc)
            raise
        if problem:
            await _close(nc)
            log.error("nats_duplicate_window_too_short", handler=self.name, problem=problem)
            raise HandlerError(f"nats {self.name}: {problem}")
        self._nc, self._js = nc, js
        return js

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _close(nc)

    # -- the handler contract ----------------------------------------------------------

    def start(self, settings: HandlerSettings) -> None:
        """Refuse to start (ConfigError) when the stream is missing or its duplicate window
        is shorter than the retry span. No server reachable, or the stream unreadable for
        another reason (a timeout): start, and check on the first connection."""
        self.needed_window = _brokers.retry_span(settings, self.options.timeout)

        async def check() -> float | str:
            nc = await self._connect()
            try:
                return await self._stream_window(nc.jetstream(timeout=self.options.timeout))
            except StreamMissing as exc:
                return str(exc)
            finally:
                await _close(nc)

        try:
            result = _brokers.in_worker_thread(check(), self.options.timeout * 2 + 1)
        except (HandlerError, TimeoutError) as exc:
            log.warning(
                "nats_start_check_deferred",
                handler=self.name,
                reason=mask_text(str(exc) or "timed out"),
                then="checked on the first connection; events wait in the outbox",
            )
            return
        if isinstance(result, str):
            raise ConfigError("stream", result.removeprefix(f"nats {self.name}: "))
        problem = self.window_problem(result)
        if problem:
            raise ConfigError("stream", problem)

    def message(self, event: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        """(subject, payload, headers) of the message for `event`."""
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Nats-Msg-Id": str(event["id"]), "Content-Type": "application/json"}
        return _brokers.render_name(self.options.subject, event), body, headers

    def preview(self, event: dict[str, Any]) -> str:
        subject, body, headers = self.message(event)
        lines = [f"JetStream publish to stream {self.options.stream}, subject {subject}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return "\n".join([*lines, "", json.dumps(json.loads(body), indent=2, ensure_ascii=False)])

    async def probe(self) -> str:
        js = await self._ready()
        window = await self._stream_window(js)
        return (
            f"connected to {self._where()}; stream {self.options.stream!r} exists,"
            f" duplicate_window {_brokers.human_seconds(window)}; nothing published"
        )

    async def deliver(self, event: dict[str, Any]) -> None:
        subject, body, headers = self.message(event)
        js = await self._ready()
        try:
            ack = await js.publish(
                subject,
                body,
                timeout=self.options.timeout,
                stream=self.options.stream,
                headers=headers,
            )
        except Exception as exc:
            from nats.js.errors import APIError

            if not isinstance(exc, APIError):  # the connection may be unusable: start over
                await self._drop()
            raise HandlerError(
                f"nats {self.name}: publish to {subject} (stream {self.options.stream}):"
                f" {_describe(exc)}"
            ) from None
        if ack.duplicate:
            log.info(
                "nats_duplicate_acknowledged",
                handler=self.name,
                event_id=event.get("id"),
                stream_seq=ack.seq,
            )

    async def aclose(self) -> None:
        await self._drop()


async def _close(nc: Any) -> None:
    try:
        await nc.close()
    except Exception as exc:  # closing a broken connection must not mask the real error
        log.debug("nats_close_failed", error=mask_text(str(exc)))


def _describe(exc: BaseException) -> str:
    from nats.errors import NoServersError
    from nats.js.errors import NoStreamResponseError

    if isinstance(exc, NoStreamResponseError):
        return "no stream captures this subject (no JetStream responders)"
    if isinstance(exc, NoServersError):
        return "no server reachable"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    return mask_text(
        text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
    )
