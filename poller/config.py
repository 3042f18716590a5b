"""Configuration: a TOML file validated by pydantic-settings, with environment overrides.

The file comes from `--config PATH` or `$BCX_POLLER_CONFIG`. Any setting can be overridden
from the environment with the prefix `BCX_POLLER_` and `__` between levels, e.g.
`BCX_POLLER_POLLER__INTERVAL=10`. Every problem becomes a `ConfigError` naming the field
and the reason; the CLI turns it into exit code 2.

Secrets (`password`, `token`, handler secrets) are `SecretStr`: their repr is `'**********'`
and they are only unwrapped at the point of use. A `*_env` / `*_file` secret is read only
by the commands that talk to Basecamp or to a target: `load_settings(secrets="skip")`
(the local commands: status, events, deliveries, redeliver) leaves them unread (a
placeholder stands in, and validators of a secret's form let it through); `"lenient"`
reads what it can and never fails for the rest.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from poller.errors import ConfigError

WatchKind = Literal[
    "projects",
    "people",
    "todolists",
    "todos",
    "messages",
    "comments",
    "documents",
    "uploads",
    "calendar_events",
]
WATCHABLE: tuple[WatchKind, ...] = get_args(WatchKind)
CONFIG_ENV = "BCX_POLLER_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PollerSettings(_Strict):
    """`[poller]`: what to watch and how often."""

    # before state_path: its validator reads it
    shards: int = Field(
        1,
        ge=1,
        le=1024,
        description="processes the accounts are split over (each runs with --shard K);"
        " changing it needs `bcx-poller reshard` first",
    )
    state_path: Path = Path("/var/lib/bcx-poller/state.db")
    interval: float = Field(30, gt=0, description="seconds between cycles")
    reconcile_interval: float = Field(
        3600, ge=0, description="seconds between full conditional re-lists; 0 = every cycle"
    )
    first_sync: Literal["baseline", "emit"] = "baseline"
    watch: tuple[WatchKind, ...] = WATCHABLE
    feed_overlap: float = Field(
        900, ge=0, description="seconds the activity window reaches back (edit window)"
    )
    cycle_timeout: float = Field(300, gt=0, description="overall deadline of one cycle")
    jitter: float = Field(0.1, ge=0, le=1, description="fraction of interval added at random")
    max_pages: int = Field(200, ge=1, description="page cap per listing (50 records a page)")
    max_activities: int = Field(
        2000, ge=1, description="new activities one cycle processes; a backlog goes in slices"
    )
    max_in_flight: int = Field(
        4,
        ge=1,
        le=16,
        description="requests of one account in flight at once (within its rate limit)",
    )
    full_recheck_interval: float = Field(
        86400,
        ge=0,
        description="seconds between reconciles that ignore stored validators (catches a"
        " stale 304); 0 = every reconcile",
    )
    timezone: str | None = Field(
        None,
        description="IANA zone for human-facing times (console, e-mail, Slack);"
        " default: the machine's",
    )

    @field_validator("state_path")
    @classmethod
    def _one_file_per_shard(cls, value: Path, info: ValidationInfo) -> Path:
        shards = info.data.get("shards", 1)
        if isinstance(shards, int) and shards > 1 and "{shard}" not in str(value):
            raise ValueError(
                f"with shards = {shards} each shard needs a state file of its own: put"
                ' {shard} in the path (e.g. "/var/lib/bcx-poller/{shard}/state.db");'
                " two shards cannot share one file"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'unknown time zone {value!r} (an IANA name such as "Europe/Berlin")'
            ) from None
        return value

    @field_validator("watch", mode="before")
    @classmethod
    def _known_watch(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            for item in value:
                if item not in WATCHABLE:
                    raise ValueError(f"unknown watch entry {item!r}; known: {', '.join(WATCHABLE)}")
        return value


def _read_secret_file(path: str, what: str) -> SecretStr:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"unreadable {what} {path!r}: {exc.strerror or exc}") from None
    text = text.strip()
    if not text:
        raise ValueError(f"{what} {path!r} is empty")
    return SecretStr(text)


def _read_secret_env(name: str, what: str) -> SecretStr:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"{what} names environment variable {name!r}, which is not set")
    return SecretStr(value)


SecretsMode = Literal["resolve", "skip", "lenient"]
_SECRETS_MODE: contextvars.ContextVar[str] = contextvars.ContextVar(
    "bcx_poller_secrets", default="resolve"
)
# What a `*_env` / `*_file` secret holds when it was not read (see `secrets_mode`): no
# environment variable or credential can hold a NUL, so it is never a real secret.
# A validator that checks a secret's form lets it through (`is_unresolved`).
UNRESOLVED = "\x00bcx-poller: secret not read"


def is_unresolved(value: SecretStr | None) -> bool:
    return value is not None and value.get_secret_value() == UNRESOLVED


@contextlib.contextmanager
def secrets_mode(mode: SecretsMode) -> Iterator[None]:
    """Within the block, `*_env` / `*_file` secrets are read (`resolve`, the default), left
    unread (`skip`: commands that only read the local state), or read when possible
    (`lenient`: masking what can be masked)."""
    token = _SECRETS_MODE.set(mode)
    try:
        yield
    finally:
        _SECRETS_MODE.reset(token)


def resolve_secret(data: dict[str, Any], key: str) -> SecretStr | None:
    """Collapse `key` / `key_env` / `key_file` in `data` into one SecretStr (or None).

    Relative `_file` paths are taken under `$CREDENTIALS_DIRECTORY` when systemd set it.
    Under `secrets_mode("skip")` an `_env` / `_file` secret is not read (`UNRESOLVED`
    stands in); under `"lenient"` one that cannot be read is.
    """
    given = [k for k in (key, f"{key}_env", f"{key}_file") if data.get(k) not in (None, "")]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}")
    if not given:
        return None
    which = given[0]
    raw = data[which]
    if which == key:
        return raw if isinstance(raw, SecretStr) else SecretStr(str(raw))
    mode = _SECRETS_MODE.get()
    if mode == "skip":
        return SecretStr(UNRESOLVED)
    try:
        if which.endswith("_env"):
            return _read_secret_env(str(raw), which)
        path = str(raw)
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if creds and not os.path.isabs(path):
            path = os.path.join(creds, path)
        return _read_secret_file(path, which)
    except ValueError:
        if mode == "lenient":
            return SecretStr(UNRESOLVED)
        raise


def collapse_secrets(data: Any, keys: tuple[str, ...]) -> Any:
    """In a raw settings mapping, replace each `key` / `key_env` / `key_file` trio by the
    resolved `key` (absent when none was given)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key in keys:
        secret = resolve_secret(data, key)
        for k in (key, f"{key}_env", f"{key}_file"):
            data.pop(k, None)
        if secret is not None:
            data[key] = secret
    return data


class OAuthSettings(_Strict):
    """`[accounts.oauth]`: OAuth 2 through 37signals Launchpad (refresh flow)."""

    client_id: str
    client_secret: SecretStr
    refresh_token: SecretStr | None = None
    redirect_uri: str = "http://localhost:8765/callback"
    token_url: str = "https://launchpad.37signals.com/authorization/token"  # noqa: S105
    authorization_url: str = "https://launchpad.37signals.com/authorization.json"

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return collapse_secrets(data, ("client_secret", "refresh_token"))


class AccountSettings(_Strict):
    """One `[[accounts]]` entry: a Basecamp 2 account and the credentials to read it."""

    id: int = Field(gt=0)
    name: str | None = None
    base_url: str | None = None
    user_agent: str = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    oauth: OAuthSettings | None = None
    rate_limit: int = Field(
        450, ge=1, le=500, description="requests per 10 s this process allows itself"
    )
    timeout: float = Field(30, gt=0, description="per-request connect/read timeout, seconds")

    @model_validator(mode="before")
    @classmethod
    def _secrets(cls, data: Any) -> Any:
        return collapse_secrets(data, ("password", "token"))

    @model_validator(mode="after")
    def _auth(self) -> AccountSettings:
        methods = [
            n
            for n, v in (("password", self.password), ("token", self.token), ("oauth", self.oauth))
            if v is not None
        ]
        if len(methods) > 1:
            raise ValueError(
                f"give only one of password, token and oauth (got {', '.join(methods)})"
            )
        if not methods:
            raise ValueError("no credentials: set password (with username), token, or [oauth]")
        if self.password is not None and not self.username:
            raise ValueError("password needs username")
        return self

    @field_validator("user_agent")
    @classmethod
    def _contact(cls, value: str) -> str:
        if "@" not in value and "http" not in value:
            raise ValueError(
                "must name the app and give a contact e-mail or URL, "
                "e.g. 'Acme Notifier (ops@acme.example)'"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def api_root(self) -> str:
        return self.base_url or f"https://basecamp.com/{self.id}/api/v1"

    @property
    def label(self) -> str:
        return self.name or str(self.id)


_SECRETISH = re.compile(r"secret|pass|token|auth|key|webhook_url|headers|env|url", re.I)


class HandlerSettings(BaseModel):
    """One `[[handlers]]` entry. Type-specific options are checked by the handler's own model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str = Field(min_length=1)
    kinds: tuple[str, ...] = ()
    projects: tuple[int, ...] = ()
    accounts: tuple[int, ...] = ()
    exclude_private: bool = False
    max_attempts: int = Field(20, ge=1)
    max_age: float = Field(86400, gt=0, description="seconds before a failing delivery is dead")
    retry_initial: float = Field(5, gt=0)
    retry_max: float = Field(900, gt=0)

    @property
    def options(self) -> dict[str, Any]:
        """The type-specific settings (everything not common to all handlers)."""
        return dict(self.model_extra or {})

    def __repr_args__(self) -> Any:
        # Type-specific options are raw values until the handler's Options model validates
        # them, so secrets (webhook `secrets`, a Slack `webhook_url`, credentials in
        # `headers` or `env`) would show up in str()/repr(). Mask the ones that may hold one.
        extra = self.model_extra or {}
        for key, value in super().__repr_args__():
            if key in extra and _SECRETISH.search(str(key)):
                yield key, "**********"
            else:
                yield key, value


class MetricsSettings(_Strict):
    listen: str | None = Field(None, description="host:port for /metrics and /healthz")


class LoggingSettings(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """The whole configuration file."""

    model_config = SettingsConfigDict(
        env_prefix="BCX_POLLER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    poller: PollerSettings = PollerSettings()
    accounts: tuple[AccountSettings, ...] = ()
    # the shard these settings were narrowed to (`poller.shards.for_shard`), None: not yet
    _shard: int | None = PrivateAttr(None)
    handlers: tuple[HandlerSettings, ...] = ()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment overrides them.
        return (env_settings, init_settings)

    @field_validator("accounts")
    @classmethod
    def _unique_ids(cls, value: tuple[AccountSettings, ...]) -> tuple[AccountSettings, ...]:
        ids = [a.id for a in value]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate id {sorted(dup)[0]}")
        return value

    @field_validator("handlers")
    @classmethod
    def _unique_names(cls, value: tuple[HandlerSettings, ...]) -> tuple[HandlerSettings, ...]:
        names = [h.name for h in value]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate name {sorted(dup)[0]!r}")
        return value

    def account(self, account_id: int) -> AccountSettings:
        for acc in self.accounts:
            if acc.id == account_id:
                return acc
        raise KeyError(account_id)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part.endswith("]"):
            continue
        else:
            out += f".{part}" if out else part
    return out


class ConfigErrors(ConfigError):
    """Several configuration errors at once; `field` / `reason` are the first one's, `str()`
    gives one `field: reason` per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__(errors[0].field, errors[0].reason)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def _env_sources(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Setting paths given by environment overrides: `poller.intervall` ->
    `BCX_POLLER_POLLER__INTERVALL`."""
    env = os.environ if environ is None else environ
    prefix = "BCX_POLLER_"
    out: dict[str, str] = {}
    for name in env:
        if name.upper().startswith(prefix) and name.upper() != CONFIG_ENV:
            out[name[len(prefix) :].lower().replace("__", ".")] = name
    return out


def with_env_source(error: ConfigError, sources: dict[str, str] | None = None) -> ConfigError:
    """`error`, naming the environment variable its setting came from, if one did."""
    sources = _env_sources() if sources is None else sources
    field = error.field.lower()
    for path, name in sorted(sources.items(), key=lambda kv: -len(kv[0])):
        if field == path or field.startswith((path + ".", path + "[")):
            return ConfigError(error.field, f"{error.reason} (from ${name})")
    return error


def _config_errors(exc: ValidationError) -> list[ConfigError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = _loc(tuple(err["loc"]))
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "missing":
            msg = "required setting is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown setting"
        out.append(ConfigError(field or "config", msg))
    return out


def _first_error(exc: ValidationError) -> ConfigError:
    return _config_errors(exc)[0]


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """The config file to read: `--config`, else `$BCX_POLLER_CONFIG`."""
    raw = explicit or os.environ.get(CONFIG_ENV)
    if not raw:
        raise ConfigError(
            "--config", f"no configuration file given (use --config or ${CONFIG_ENV})"
        )
    return Path(raw)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"malformed TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(str(path), "malformed TOML: nested too deeply") from None


def parse_settings(data: dict[str, Any]) -> Settings:
    """Validate a parsed config mapping (plus environment overrides) into `Settings`."""
    if not isinstance(data, dict):
        raise ConfigError("config", "expected a table of settings")
    for key in data:
        # pydantic-settings takes `_env_file`, `_secrets_dir`, `_cli_parse_args`, ... as
        # keyword arguments: a config file must not be able to reach them.
        if not isinstance(key, str) or key.startswith("_"):
            raise ConfigError(str(key), "unknown setting")
    from handlers.registry import unwatched, validate_handler_settings

    errors: list[ConfigError] = []
    settings: Settings | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        errors += _config_errors(exc)
    if settings is not None:
        handlers: list[tuple[int, HandlerSettings]] = list(enumerate(settings.handlers))
    else:  # still check each handler's own options: every error at once
        handlers = []
        raw = data.get("handlers")
        for index, entry in enumerate(raw if isinstance(raw, list) else []):
            try:
                handlers.append((index, HandlerSettings(**entry)))
            except (ValidationError, TypeError):
                continue  # already reported by Settings
    for index, handler in handlers:
        try:
            options = validate_handler_settings(handler, field=f"handlers[{index}]")
        except ConfigErrors as exc:
            errors += exc.errors
        except ConfigError as exc:
            errors.append(exc)
        else:
            if settings is not None:
                errors += unwatched(options, settings.poller.watch, field=f"handlers[{index}]")
    if errors:
        sources = _env_sources()
        errors = [with_env_source(e, sources) for e in errors]
        raise (errors[0] if len(errors) == 1 else ConfigErrors(errors))
    assert settings is not None
    return settings


def insecure_permissions(path: Path) -> bool:
    """True when a config file is writable by group or others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def load_settings(
    path: str | os.PathLike[str] | None = None, *, secrets: SecretsMode = "resolve"
) -> Settings:
    """Read and validate the configuration file. Raises `ConfigError`. `secrets`: see
    `secrets_mode`."""
    data = read_toml(config_path(path))
    with secrets_mode(secrets):
        return parse_settings(data)
