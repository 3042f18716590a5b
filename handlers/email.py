"""`email`: send each event, or a periodic digest of events, by SMTP.

Sending uses the standard library's smtplib in a worker thread (no extra dependency).
`security` is "starttls" (default, port 587; the connection fails rather than continue
unencrypted if the server does not offer STARTTLS), "tls" (implicit TLS, port 465) or
"none" (port 25; a password is then refused unless the host is the local machine).
Certificates are verified against the system store, or `ca_file`.

Subject, text and HTML bodies come from Jinja2 templates (see handlers/templates.py); each
can be overridden, and `html_template = ""` sends text only. Email templates see `events`,
`count` and `omitted` as well, so the same templates serve single mails and digests.

Recipients: `to` is a list (or one string) of e-mail addresses and the words "assignee",
"creator" and "subscribers" (personal routing, see handlers/_recipients.py): each event
goes to the fixed addresses and to the e-mail addresses, among the people the poller
stores, of the item's assignee / creator / subscribers. A person named who cannot be
reached (not stored, removed, without an address) is left out with a warning when
someone else gets the mail, and makes the delivery a permanent error with that reason
(a dead letter) when nobody does; an item that names nobody (an unassigned to-do) sends
nothing. Routing needs `people` in `[poller] watch` (a configuration error otherwise)
and one mail per event (`digest_minutes` = 0).

Digest mode (`digest_minutes` > 0): `deliver` appends the event durably (fsync) to
`<state_dir>/digest-<name>.jsonl` and returns. One mail with all spooled events is sent
once the oldest has waited `digest_minutes`, checked on each `deliver` and by `flush()`,
which the dispatcher may call periodically (`flush(force=True)` sends whatever is spooled).
The spool is truncated only after the SMTP server accepted the mail, so a crash or an SMTP
outage loses nothing (at worst a digest is sent twice). A digest the server rejects for
good (5xx) is moved aside to `digest-<name>.rejected-<time>.jsonl` so later ones can go.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import smtplib
import sqlite3
import ssl
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from handlers._recipients import ROLES, resolve
from handlers.base import HandlerContext, HandlerOptions
from handlers.templates import compile_template, default_source, digest_context, render
from poller.config import resolve_secret
from poller.errors import HandlerError, PermanentHandlerError

if TYPE_CHECKING:
    from jinja2 import Template

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DIGEST_LIST_LIMIT = 200
_RETRY_MIN, _RETRY_MAX = 30.0, 900.0
_DEFAULT_SUBJECT, _DEFAULT_TEXT, _DEFAULT_HTML = "email_subject.txt", "email.txt", "email.html"


def _check_address(value: str) -> str:
    value = value.strip()
    if any(c in value for c in "\r\n\0"):
        raise ValueError("an address must be on one line")
    _, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not (at and local and domain) or " " in addr:
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


def _is_local(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EmailOptions(HandlerOptions):
    model_config = ConfigDict(hide_input_in_errors=True)

    host: str = Field(min_length=1, description="SMTP server")
    port: int | None = Field(None, ge=1, le=65535, description="default by security")
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(None, description="CA bundle to verify the server with")
    from_addr: str
    to: list[str] = Field(
        min_length=1,
        description='addresses and/or "assignee", "creator", "subscribers" (one mail per event)',
    )
    subject_template: str | None = None
    text_template: str | None = None
    html_template: str | None = Field(None, description='"" = no HTML part')
    timeout: float = Field(30, gt=0, description="seconds per SMTP operation")
    digest_minutes: float = Field(0, ge=0, description="0 = one mail per event")

    @model_validator(mode="before")
    @classmethod
    def _secret_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        secret = resolve_secret(data, "password")
        for key in ("password_env", "password_file"):
            data.pop(key, None)
        data["password"] = secret
        return data

    @field_validator("from_addr")
    @classmethod
    def _from(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("to", mode="before")
    @classmethod
    def _one_to(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for v in value:
            word = v.strip()
            entry = word if word in ROLES else _check_address(v)
            if entry not in out:
                out.append(entry)
        return out

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"{str(value)!r} is not a readable file")
        return value.expanduser() if value is not None else None

    @field_validator("subject_template", "text_template")
    @classmethod
    def _text_templates(cls, value: str | None) -> str | None:
        if value is not None:
            compile_template(value, digest=True)
        return value

    @field_validator("html_template")
    @classmethod
    def _html_template(cls, value: str | None) -> str | None:
        if value:
            compile_template(value, html=True, digest=True)
        return value

    @model_validator(mode="after")
    def _auth(self) -> EmailOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and self.security == "none" and not _is_local(self.host):
            raise ValueError(
                "refusing to send a password without TLS: use security = 'starttls' or 'tls'"
            )
        return self

    @model_validator(mode="after")
    def _routing_sends_one_mail_per_event(self) -> EmailOptions:
        if self.roles and self.digest_minutes:
            raise ValueError(
                f"to = {', '.join(self.roles)} (personal routing) sends one mail per event:"
                " it cannot go with digest_minutes, whose digest goes to fixed addresses"
            )
        return self

    @property
    def roles(self) -> list[str]:
        """The personal-routing words of `to`."""
        return [t for t in self.to if t in ROLES]

    @property
    def addresses(self) -> list[str]:
        """The fixed addresses of `to`."""
        return [t for t in self.to if t not in ROLES]

    def needs_watch(self) -> dict[str, str]:
        """Setting -> the `[poller] watch` entry it needs (checked with the config)."""
        return {"to": "people"} if self.roles else {}

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


class EmailHandler:
    Options = EmailOptions

    def __init__(self, options: EmailOptions, context: HandlerContext) -> None:
        self.options = options
        self.name = context.name
        self.spool_path = context.state_dir / f"digest-{context.name}.jsonl"
        self._people = context.people
        o = options
        self._subject = compile_template(
            o.subject_template or default_source(_DEFAULT_SUBJECT), digest=True
        )
        self._text = compile_template(o.text_template or default_source(_DEFAULT_TEXT), digest=True)
        html_source = default_source(_DEFAULT_HTML) if o.html_template is None else o.html_template
        self._html = compile_template(html_source, html=True, digest=True) if html_source else None
        self._lock = asyncio.Lock()
        self._oldest: float | None = None  # spooled_at of the oldest spooled event
        self._spool_loaded = False
        self._failures = 0
        self._next_attempt = 0.0

    def __repr__(self) -> str:
        o = self.options
        return f"EmailHandler(name={self.name!r}, host={o.host!r}, to={o.to!r})"

    # -- composing --------------------------------------------------------------------------

    def _render_all(
        self, templates: tuple[Template, Template, Template | None], context: dict[str, Any]
    ) -> tuple[str, str, str | None]:
        subject, text, html = templates
        return (
            render(subject, context),
            render(text, context),
            render(html, context) if html is not None else None,
        )

    def compose(
        self,
        events: list[dict[str, Any]],
        *,
        fallback: bool = False,
        to: list[str] | None = None,
    ) -> EmailMessage:
        """The mail for one event or a digest, to `to` (default: the fixed addresses).
        Raises ValueError if a template fails, unless `fallback`, when the default
        templates are used instead."""
        context = digest_context(events, limit=DIGEST_LIST_LIMIT)
        try:
            subject, text, html = self._render_all((self._subject, self._text, self._html), context)
        except ValueError as exc:
            if not fallback:
                raise
            log.warning("email %s: %s; using the default templates", self.name, exc)
            defaults = (
                compile_template(default_source(_DEFAULT_SUBJECT), digest=True),
                compile_template(default_source(_DEFAULT_TEXT), digest=True),
                compile_template(default_source(_DEFAULT_HTML), html=True, digest=True),
            )
            subject, text, html = self._render_all(defaults, context)
        subject = " ".join(subject.split())
        if len(subject) > 250:
            subject = subject[:249] + "…"
        msg = EmailMessage()
        msg["Subject"] = subject or "Basecamp changes"
        msg["From"] = self.options.from_addr
        recipients = self.options.addresses if to is None else to
        if recipients:
            msg["To"] = ", ".join(recipients)
        msg["Date"] = formatdate(localtime=True)
        domain = parseaddr(self.options.from_addr)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid("bcx", domain=domain)
        msg["Auto-Submitted"] = "auto-generated"
        if len(events) == 1 and events[0].get("id"):
            msg["X-BCX-Event-Id"] = str(events[0]["id"])
        msg.set_content(text.strip() + "\n")
        if html:
            msg.add_alternative(html, subtype="html")
        return msg

    def preview(self, event: dict[str, Any]) -> str:
        """The mail `deliver` would send for this event alone (a digest would list it with
        the others), without sending it. Raises ValueError if a template fails."""
        msg = self.compose([event])
        o = self.options
        lines = [f"via {o.host}:{o.effective_port} ({o.security})"]
        if o.roles:
            lines.append(
                f"to the {', '.join(o.roles)} of the item too, resolved from the stored people"
                " when it is delivered"
            )
        lines += [f"{k}: {v}" for k, v in msg.items()]
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        lines += ["", str(plain.get_content()).rstrip() if plain is not None else ""]
        if html is not None:
            lines += ["", "--- text/html ---", str(html.get_content()).rstrip()]
        return "\n".join(lines)

    # -- sending ----------------------------------------------------------------------------

    def _send_blocking(self, msg: EmailMessage) -> None:
        o = self.options
        tls = ssl.create_default_context(cafile=str(o.ca_file) if o.ca_file else None)
        smtp: smtplib.SMTP
        if o.security == "tls":
            smtp = smtplib.SMTP_SSL(o.host, o.effective_port, timeout=o.timeout, context=tls)
        else:
            smtp = smtplib.SMTP(o.host, o.effective_port, timeout=o.timeout)
        with smtp:
            smtp.ehlo()
            if o.security == "starttls":
                smtp.starttls(context=tls)
                smtp.ehlo()
            if o.username is not None and o.password is not None:
                smtp.login(o.username, o.password.get_secret_value())
            refused = smtp.send_message(msg)
        if refused:
            log.warning("email %s: some recipients were refused: %s", self.name, ", ".join(refused))

    def _probe_blocking(self) -> str:
        o = self.options
        tls = ssl.create_default_context(cafile=str(o.ca_file) if o.ca_file else None)
        smtp: smtplib.SMTP
        if o.security == "tls":
            smtp = smtplib.SMTP_SSL(o.host, o.effective_port, timeout=o.timeout, context=tls)
        else:
            smtp = smtplib.SMTP(o.host, o.effective_port, timeout=o.timeout)
        done = ["connected"]
        with smtp:
            smtp.ehlo()
            if o.security == "starttls":
                smtp.starttls(context=tls)
                smtp.ehlo()
                done.append("STARTTLS")
            elif o.security == "tls":
                done.append("TLS")
            if o.username is not None and o.password is not None:
                smtp.login(o.username, o.password.get_secret_value())
                done.append(f"logged in as {o.username}")
        return f"{', '.join(done)} at {o.host}:{o.effective_port}; sent nothing"

    async def probe(self) -> str:
        """Connect, EHLO, STARTTLS and log in as configured; send no mail."""
        o = self.options
        try:
            return await asyncio.to_thread(self._probe_blocking)
        except smtplib.SMTPAuthenticationError as exc:
            raise HandlerError(
                self._scrub(f"{o.host}: authentication failed: {exc.smtp_code}")
            ) from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise HandlerError(self._scrub(f"{o.host}:{o.effective_port}: {exc}")) from None

    def _scrub(self, text: str) -> str:
        if self.options.password is not None:
            secret = self.options.password.get_secret_value()
            if secret:
                text = text.replace(secret, "***")
        return text

    async def send(self, msg: EmailMessage) -> None:
        """Send one message; HandlerError (retry) or PermanentHandlerError (5xx rejection)."""
        o = self.options
        where = f"email {self.name}: {o.host}:{o.effective_port}"
        try:
            await asyncio.to_thread(self._send_blocking, msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(
                f"{rcpt}: {code} {_decode(reply)}" for rcpt, (code, reply) in exc.recipients.items()
            )
            cls = PermanentHandlerError if all(c >= 500 for c in codes) else HandlerError
            raise cls(self._scrub(f"{where}: all recipients refused: {detail}")) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise HandlerError(
                self._scrub(
                    f"{where}: authentication failed: {exc.smtp_code} {_decode(exc.smtp_error)}"
                )
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise HandlerError(self._scrub(f"{where}: {exc} (security = {o.security!r})")) from None
        except smtplib.SMTPDataError as exc:
            cls = PermanentHandlerError if exc.smtp_code >= 500 else HandlerError
            raise cls(
                self._scrub(f"{where}: message refused: {exc.smtp_code} {_decode(exc.smtp_error)}")
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise HandlerError(
                self._scrub(f"{where}: {exc.smtp_code} {_decode(exc.smtp_error)}")
            ) from None
        except ssl.SSLError as exc:
            raise HandlerError(self._scrub(f"{where}: TLS failed: {exc.reason or exc}")) from None
        except (smtplib.SMTPException, OSError) as exc:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise HandlerError(self._scrub(f"{where}: {detail}")) from None

    # -- the handler contract ---------------------------------------------------------------

    async def recipients(self, event: dict[str, Any]) -> list[str]:
        """Who gets the mail for this event: the fixed addresses, then the people `to`
        names, each once. PermanentHandlerError when people were named and none of them
        (and no fixed address) can be reached; HandlerError when the stored people cannot
        be read."""
        o = self.options
        if not o.roles:
            return list(o.addresses)
        where = f"email {self.name}"
        try:
            found = await asyncio.to_thread(resolve, event, o.roles, self._people)
        except (OSError, sqlite3.Error) as exc:
            raise HandlerError(f"{where}: cannot read the stored people: {exc}") from None
        out = list(o.addresses)
        seen = {parseaddr(a)[1].lower() for a in out}
        problems = list(found.problems)
        for person in found.people:
            assert person.email is not None  # resolve() keeps only people with one
            try:
                address = _check_address(formataddr((person.name, person.email)))
            except ValueError:
                problems.append(
                    f"{person.name} (person {person.id}): {person.email!r} is not an e-mail address"
                )
                continue
            if parseaddr(address)[1].lower() not in seen:
                seen.add(parseaddr(address)[1].lower())
                out.append(address)
        if problems and not out:
            raise PermanentHandlerError(f"{where}: no recipient: {'; '.join(problems)}")
        if problems:
            log.warning(
                "email %s: event %s not sent to %s", self.name, event.get("id"), "; ".join(problems)
            )
        if not out and event.get("test") is True:
            raise PermanentHandlerError(
                f"{where}: the event names no {', '.join(o.roles)}: nobody to send it to"
            )
        return out

    async def deliver(self, event: dict[str, Any]) -> None:
        if not self.options.digest_minutes:
            to = await self.recipients(event)
            if not to:
                log.info(
                    "email %s: event %s names no %s: nothing sent",
                    self.name,
                    event.get("id"),
                    ", ".join(self.options.roles),
                )
                return
            try:
                msg = self.compose([event], to=to)
            except ValueError as exc:
                raise PermanentHandlerError(f"email {self.name}: {exc}") from None
            await self.send(msg)
            return
        async with self._lock:
            try:
                await asyncio.to_thread(self._spool_append, event)
            except OSError as exc:
                raise HandlerError(
                    f"email {self.name}: cannot spool to {self.spool_path}: {exc.strerror or exc}"
                ) from None
        try:
            await self.flush()
        except HandlerError as exc:  # the event is safe in the spool; the digest goes later
            log.warning("email %s: digest not sent yet: %s", self.name, exc)

    async def flush(self, force: bool = False) -> bool:
        """Send the digest if the oldest spooled event has waited `digest_minutes` (or at
        once if `force`). Returns True if a mail was sent. Raises HandlerError if sending
        failed (the spool is kept; unforced flushes back off after failures)."""
        async with self._lock:
            if not self._spool_loaded:
                self._oldest = await asyncio.to_thread(self._spool_oldest)
                self._spool_loaded = True
            if self._oldest is None:
                return False
            now = time.time()
            if not force:
                if now - self._oldest < self.options.digest_minutes * 60:
                    return False
                if time.monotonic() < self._next_attempt:
                    return False
            events = await asyncio.to_thread(self._spool_read)
            if not events:
                await asyncio.to_thread(self._spool_truncate)
                self._oldest = None
                return False
            try:
                await self.send(self.compose(events, fallback=True))
            except PermanentHandlerError:
                rejected = await asyncio.to_thread(self._spool_set_aside)
                self._oldest = None
                log.error("email %s: digest rejected; events kept in %s", self.name, rejected)
                raise
            except HandlerError:
                self._failures += 1
                delay = min(_RETRY_MAX, _RETRY_MIN * 2 ** (self._failures - 1))
                self._next_attempt = time.monotonic() + delay
                raise
            await asyncio.to_thread(self._spool_truncate)
            self._oldest = None
            self._failures = 0
            self._next_attempt = 0.0
            return True

    async def aclose(self) -> None:
        """Nothing to release: a pending digest stays spooled and is sent after restart."""
        return None

    # -- the spool (blocking; called in a worker thread under the lock) ---------------------

    def _spool_append(self, event: dict[str, Any]) -> None:
        now = time.time()
        line = json.dumps({"spooled_at": now, "event": event}, separators=(",", ":"))
        data = (line + "\n").encode()
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.spool_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a torn line from a crash stays on its own
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._spool_loaded:
            self._oldest = self._spool_oldest()
            self._spool_loaded = True
        elif self._oldest is None:
            self._oldest = now

    def _spool_entries(self) -> list[dict[str, Any]]:
        try:
            raw = self.spool_path.read_bytes()
        except FileNotFoundError:
            return []
        entries = []
        for line in raw.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("email %s: skipping a damaged line in %s", self.name, self.spool_path)
                continue
            if isinstance(entry, dict) and isinstance(entry.get("event"), dict):
                entries.append(entry)
        return entries

    def _spool_oldest(self) -> float | None:
        times = [e.get("spooled_at") for e in self._spool_entries()]
        numbers = [float(t) for t in times if isinstance(t, int | float)]
        return min(numbers) if numbers else (time.time() if times else None)

    def _spool_read(self) -> list[dict[str, Any]]:
        """Spooled events in order, each event id once."""
        seen: set[str] = set()
        events = []
        for entry in self._spool_entries():
            event = entry["event"]
            key = str(event.get("id"))
            if key not in seen:
                seen.add(key)
                events.append(event)
        return events

    def _spool_truncate(self) -> None:
        try:
            fd = os.open(self.spool_path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _spool_set_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.spool_path.with_name(f"digest-{self.name}.rejected-{stamp}.jsonl")
        os.replace(self.spool_path, target)
        return target


def _decode(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


__all__ = ["EmailHandler", "EmailOptions"]
