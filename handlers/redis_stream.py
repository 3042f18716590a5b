"""`redis_stream`: append each event to a Redis stream with XADD (optional: `pip install
'bcx-poller[redis]'`, redis-py's asyncio client).

Each event is one stream entry with these fields (all strings):

| field | value |
|---|---|
| `id` | the event id (`bcx_...`), the key to de-duplicate by |
| `kind` | e.g. `todo_completed` |
| `account_id` | the Basecamp account |
| `project_id` | the project's id, empty without a project |
| `occurred_at` | the event's `created_at` (ISO 8601) |
| `event` | the whole envelope as compact JSON |

De-duplication by event id happens in the same atomic step as the XADD: one Lua script
does `SET <prefix>seen:<id> 1 NX EX <dedupe_ttl>` and, only if that key was new, the
XADD (`MAXLEN ~ <maxlen>` when set). If the XADD fails, the script deletes the key again,
so a failed append never marks the event seen. A retry, a requeued delivery or a crash
between the XADD and the delivery row being marked done therefore adds nothing, for as
long as the key lives: `dedupe_ttl` must be at least the handler's longest retry span,
checked at start-up (exit 2 otherwise).

On a server whose XADD takes `IDMP` (Redis 8.6+, detected with `COMMAND DOCS XADD` on each
new connection), the script's XADD also carries `IDMP bcx-poller:<handler> <event id>`
(`idmp = "auto"`), so the stream itself records the id too (it survives the `seen` key
being evicted by a `maxmemory` policy). The `seen` key stays the rule: IDMP keeps an id at
most 86,400 s and at most 10,000 ids per producer, less than a retry span may need.

The script touches two keys (the stream and the `seen` key), so on Redis Cluster both must
hash to one slot: put the same hash tag in `stream` and `prefix` (`bcx:{events}` and
`bcx:{events}:`).
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers import _brokers
from handlers.base import HandlerContext, HandlerOptions
from poller.config import HandlerSettings, is_unresolved, resolve_secret
from poller.errors import ConfigError, HandlerError
from poller.logs import mask_text

log = structlog.get_logger(__name__)

MISSING = "the redis_stream handler needs the optional dependency: pip install 'bcx-poller[redis]'"

# KEYS[1] the stream, KEYS[2] the seen key; ARGV[1] ttl (s), ARGV[2] maxlen ('0': none),
# ARGV[3] IDMP producer id ('': no IDMP), ARGV[4] the event id, ARGV[5..] field, value, ...
# Returns the new entry's id, nil when the event was seen already (or IDMP's entry id).
SCRIPT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return false
end
local args = {'XADD', KEYS[1]}
if ARGV[3] ~= '' then
  table.insert(args, 'IDMP'); table.insert(args, ARGV[3]); table.insert(args, ARGV[4])
end
if ARGV[2] ~= '0' then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[2])
end
table.insert(args, '*')
for i = 5, #ARGV do table.insert(args, ARGV[i]) end
local added = redis.pcall(unpack(args))
if type(added) == 'table' and added.err then
  redis.call('DEL', KEYS[2])
  return added
end
return added
"""


def _redis() -> Any:
    try:
        import redis.asyncio
    except ImportError:
        return None
    return redis.asyncio


def fields(event: dict[str, Any]) -> dict[str, str]:
    """The stream entry's fields for `event` (see the module docstring)."""
    project = event.get("project") or {}
    return {
        "id": str(event["id"]),
        "kind": str(event.get("kind") or ""),
        "account_id": str(event.get("account_id") or ""),
        "project_id": "" if project.get("id") is None else str(project["id"]),
        "occurred_at": str(event.get("created_at") or ""),
        "event": json.dumps(event, separators=(",", ":"), ensure_ascii=False),
    }


class RedisStreamOptions(HandlerOptions):
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field("redis://127.0.0.1:6379/0", description="redis://, rediss:// or unix://")
    username: str | None = Field(None, min_length=1, description="ACL user (with password)")
    password: SecretStr | None = Field(None, description="password (or _env / _file)")
    stream: str = Field("bcx:events", description="stream key template")
    prefix: str = Field("bcx:", description="prefix of the `<prefix>seen:<id>` keys")
    dedupe_ttl: int = Field(172800, ge=1, description="seconds a seen id is remembered")
    maxlen: int | None = Field(None, ge=1, description="approximate cap (MAXLEN ~); none: no trim")
    idmp: Literal["auto", "off"] = Field("auto", description="also XADD IDMP where supported")
    timeout: float = Field(5, gt=0, description="seconds: connect, and each command")

    @model_validator(mode="before")
    @classmethod
    def _secret_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        secret = resolve_secret(data, "password")
        for key in ("password_env", "password_file"):
            data.pop(key, None)
        if secret is not None:
            data["password"] = secret
        return data

    @model_validator(mode="after")
    def _installed(self) -> RedisStreamOptions:
        if _redis() is None:
            raise ValueError(MISSING)
        if self.username is not None and self.password is None:
            raise ValueError("username needs password")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
            _ = parts.port
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if parts.scheme.lower() not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        if parts.scheme.lower() != "unix" and not parts.hostname:
            raise ValueError("has no host")
        if parts.username or parts.password or "password=" in parts.query:
            raise ValueError(
                "must not carry credentials: use username and password (or password_env /"
                " password_file)"
            )
        return value.strip()

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        return _brokers.check_template(value)

    @field_validator("password")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or is_unresolved(value):
            return value
        if not value.get_secret_value():
            raise ValueError("is empty")
        return value


class RedisStreamHandler:
    Options = RedisStreamOptions

    def __init__(self, options: RedisStreamOptions, context: HandlerContext) -> None:
        if _redis() is None:  # validated at start-up; kept for callers that skip validation
            raise HandlerError(MISSING)
        self.options = options
        self.name = context.name
        self.producer = f"bcx-poller:{context.name}"
        self._client: Any = None
        self._script: Any = None
        self.idmp: bool | None = None  # None: not asked yet (per connection)

    def __repr__(self) -> str:
        return f"RedisStreamHandler(name={self.name!r}, stream={self.options.stream!r})"

    def _where(self) -> str:
        parts = urlsplit(self.options.url)
        if parts.scheme.lower() == "unix":
            return f"unix://{parts.path}"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    def _new_client(self) -> Any:
        lib = _redis()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        o = self.options
        return lib.Redis.from_url(
            o.url,
            username=o.username,
            password=o.password.get_secret_value() if o.password is not None else None,
            socket_timeout=o.timeout,
            socket_connect_timeout=o.timeout,
            retry=Retry(NoBackoff(), 0),  # the dispatcher retries, with backoff
            client_name=f"bcx-poller-{self.name}",
        )

    async def _supports_idmp(self, client: Any) -> bool:
        """Whether this server's XADD takes IDMP (Redis 8.6+): its COMMAND DOCS say so."""
        if self.options.idmp == "off":
            return False
        try:
            docs = await client.execute_command("COMMAND", "DOCS", "XADD")
        except Exception:  # before Redis 7 there is no COMMAND DOCS, and no IDMP either
            return False
        return "idmp" in repr(docs).lower()

    async def _ready(self) -> Any:
        if self._client is not None and self.idmp is not None:
            return self._client
        await self._drop()
        client = self._new_client()
        try:
            self.idmp = await self._supports_idmp(client)
            await client.ping()
        except Exception as exc:
            await _close(client)
            self.idmp = None
            raise HandlerError(
                f"redis_stream {self.name}: cannot reach {self._where()}: {_describe(exc)}"
            ) from None
        self._client = client
        self._script = client.register_script(SCRIPT)
        log.debug("redis_stream_connected", handler=self.name, idmp=self.idmp)
        return client

    async def _drop(self) -> None:
        client, self._client, self._script, self.idmp = self._client, None, None, None
        if client is not None:
            await _close(client)

    # -- the handler contract ----------------------------------------------------------

    def start(self, settings: HandlerSettings) -> None:
        """Refuse to start (ConfigError) when `dedupe_ttl` is shorter than the retry span.
        Then ask the server what it supports; unreachable: start, ask on connect."""
        need = _brokers.retry_span(settings, self.options.timeout)
        if self.options.dedupe_ttl < need:
            raise ConfigError(
                "dedupe_ttl",
                f"{self.options.dedupe_ttl} s ({_brokers.human_seconds(self.options.dedupe_ttl)})"
                f" is shorter than this handler's longest retry span"
                f" {_brokers.human_seconds(need)} ({int(-(-need // 1))} s): a retry after the"
                f" seen key expired would add a second copy to {self.options.stream!r}. Raise"
                " dedupe_ttl or shorten the retries (max_attempts, retry_max, max_age)",
            )

        async def ask() -> bool:
            client = self._new_client()
            try:
                await client.ping()
                return await self._supports_idmp(client)
            finally:
                await _close(client)

        try:
            idmp = _brokers.in_worker_thread(ask(), self.options.timeout * 2 + 1)
        except Exception as exc:
            log.warning(
                "redis_stream_start_check_deferred",
                handler=self.name,
                reason=f"cannot reach {self._where()}: {_describe(exc)}",
                then="connects on the first delivery; events wait in the outbox",
            )
            return
        log.info("redis_stream_ready", handler=self.name, idmp=idmp, where=self._where())

    def script_call(self, event: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(keys, args) of the script for `event`."""
        o = self.options
        keys = [_brokers.render_name(o.stream, event), f"{o.prefix}seen:{event['id']}"]
        args = [
            str(o.dedupe_ttl),
            str(o.maxlen or 0),
            self.producer if self.idmp else "",
            str(event["id"]),
        ]
        for name, value in fields(event).items():
            args += [name, value]
        return keys, args

    def preview(self, event: dict[str, Any]) -> str:
        keys, _args = self.script_call(event)
        trim = f" MAXLEN ~ {self.options.maxlen}" if self.options.maxlen else ""
        lines = [
            f"SET {keys[1]} 1 NX EX {self.options.dedupe_ttl}, then (if new)"
            f" XADD {keys[0]}{trim} * with fields:"
        ]
        for name, value in fields(event).items():
            if name == "event":
                pretty = json.dumps(json.loads(value), indent=2, ensure_ascii=False)
                lines.append(f"event: {pretty}")
            else:
                lines.append(f"{name}: {value}")
        return "\n".join(lines)

    async def probe(self) -> str:
        client = await self._ready()
        info = await client.info("server")
        version = info.get("redis_version", "?") if isinstance(info, dict) else "?"
        idmp = "XADD IDMP used too" if self.idmp else "no XADD IDMP (SET NX guards alone)"
        return f"connected to {self._where()} (Redis {version}); {idmp}; nothing added"

    async def deliver(self, event: dict[str, Any]) -> None:
        await self._ready()
        keys, args = self.script_call(event)
        try:
            added = await self._script(keys=keys, args=args)
        except Exception as exc:
            from redis.exceptions import ResponseError

            if not isinstance(exc, ResponseError):  # the connection may be unusable
                await self._drop()
            raise HandlerError(
                f"redis_stream {self.name}: XADD to {keys[0]}: {_describe(exc)}"
            ) from None
        if added is None:
            log.info("redis_stream_duplicate_skipped", handler=self.name, event_id=event["id"])

    async def aclose(self) -> None:
        await self._drop()


async def _close(client: Any) -> None:
    try:
        await client.aclose()
    except Exception as exc:  # closing a broken connection must not mask the real error
        log.debug("redis_close_failed", error=mask_text(str(exc)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    return mask_text(f"{type(exc).__name__}: {text}")
