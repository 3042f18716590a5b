"""A real SMTP server (aiosmtpd) on loopback, optionally with STARTTLS/implicit TLS and AUTH."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "bcx-bot"
PASSWORD = "s3cret-Pa55word-9f8e7d"


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    reject_rcpt: dict[str, str] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.reject_rcpt:
            return self.reject_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append(cast(EmailMessage, msg))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == USER.encode()
            and auth_data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)  # handled=False: the server says 535


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (openssl CLI)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextmanager
def smtp_server(
    *, cert: tuple[Path, Path] | None = None, mode: str = "none", auth: bool = False
) -> Iterator[tuple[Mailbox, int]]:
    """mode: "none" (plain), "starttls" (STARTTLS required) or "tls" (implicit TLS)."""
    box = Mailbox()
    kwargs: dict[str, Any] = {}
    if mode != "none":
        assert cert is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        if mode == "starttls":
            kwargs.update(tls_context=ctx, require_starttls=True)
        else:
            # aiosmtpd only counts STARTTLS as TLS for AUTH; here the whole connection is
            # TLS. (auth_required would make it warn about that; the tests check logins.)
            kwargs.update(ssl_context=ctx, auth_require_tls=False)
    if auth:
        kwargs.update(authenticator=box.authenticate, auth_required=mode != "tls")
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
