"""Sending one email through an SMTP relay, and what its answers mean for the job.

Settings come from the environment, or from ``[providers.smtp]`` in
``config/queues.toml`` (the environment wins, field by field)::

    SMTP_HOST       host       the relay; unset everywhere: dry run, nothing is sent
    SMTP_PORT       port       default by security: 587 starttls, 465 tls, 25 none
    SMTP_SECURITY   security   starttls (default) | tls (implicit TLS, SMTPS) | none
    SMTP_USER       username   AUTH login; with SMTP_PASSWORD, or neither
    SMTP_PASSWORD   password   never logged, stored or put in an error (nor a relay's echo of it)
    SMTP_FROM       from       required: the sender, "crm@example.com" or "CRM <crm@...>"
    SMTP_TIMEOUT    timeout    seconds to connect and for each answer (30); a whole
                               delivery ends within 4 of them
    SMTP_CA_FILE    ca_file    PEM file of the CAs to trust instead of the system's

TLS (``starttls`` and ``tls``) always verifies the relay's certificate and
name. One connection per email: connect, (STARTTLS,) AUTH, MAIL, RCPT, DATA,
QUIT. :func:`deliver` raises :mod:`pipelines._providers`' send exceptions:

- a 4xx answer, a relay not reached, a connection lost before DATA: :class:`SendError`
  (retried after the queue's backoff);
- a 5xx answer (550 mailbox unavailable, 554 sender not verified): :class:`SendRefused`;
- a refused login, AUTH or STARTTLS not offered, 530 authentication required, an
  untrusted certificate, TLS on a plain port: :class:`SenderConfigError`;
- the connection lost or timed out after the message was handed over in DATA:
  :class:`SendOutcomeUnknown` (the relay may have taken it).
"""

from __future__ import annotations

import email.policy
import email.utils
import ipaddress
import os
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from framework.masking import validation_summary
from pipelines._http import deadline, hide_secrets, time_left
from pipelines._providers import (
    SenderConfigError,
    SendError,
    SendOutcomeUnknown,
    SendRefused,
    merged_settings,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_TIMEOUT",
    "ENVIRONMENT",
    "SmtpSettings",
    "deliver",
    "smtp_settings",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds to connect to the relay, and to wait for each of its answers."""

DEADLINE_FACTOR = 4
"""A whole delivery (connect, TLS, login, the message) ends within this many timeouts:
a relay that trickles its answers (a line every few seconds) holds no worker longer."""


def _cut_to_deadline(smtp: smtplib.SMTP) -> None:
    # smtplib sets the socket's timeout once; each exchange gets what is left instead
    if smtp.sock is not None:
        smtp.sock.settimeout(time_left(smtp.timeout))
    if smtp.file is not None and not isinstance(smtp.file, _BoundedLines):
        smtp.file = _BoundedLines(smtp.file, smtp)


class _BoundedLines:
    """The reply stream of a session: each line read waits at most what is left of the
    deadline (a reply of many lines is read in one ``getreply``)."""

    def __init__(self, lines: Any, smtp: smtplib.SMTP) -> None:
        self._lines, self._smtp = lines, smtp

    def readline(self, size: int = -1) -> bytes:
        if self._smtp.sock is not None:
            self._smtp.sock.settimeout(time_left(self._smtp.timeout))
        line: bytes = self._lines.readline(size)
        return line

    def close(self) -> None:
        self._lines.close()


class _BoundedSMTP(smtplib.SMTP):
    """A session whose every send and answer line waits at most what is left of the
    deadline."""

    def send(self, s: ReadableBuffer | str) -> None:
        _cut_to_deadline(self)
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        if self.file is None and self.sock is not None:
            self.file = self.sock.makefile("rb")
        _cut_to_deadline(self)
        return super().getreply()


class _BoundedSMTPSSL(_BoundedSMTP, smtplib.SMTP_SSL):
    """:class:`_BoundedSMTP` over implicit TLS."""


DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
"""The port for each ``security`` when ``SMTP_PORT`` is not set."""

ENVIRONMENT = {
    "host": "SMTP_HOST",
    "port": "SMTP_PORT",
    "security": "SMTP_SECURITY",
    "username": "SMTP_USER",
    "password": "SMTP_PASSWORD",
    "from": "SMTP_FROM",
    "timeout": "SMTP_TIMEOUT",
    "ca_file": "SMTP_CA_FILE",
}
"""Each setting and the environment variable that sets it."""
CONFIG_TABLE = "[providers.smtp]"
RENAMED = ("HUEYARD_SMTP_HOST", "HUEYARD_SMTP_PORT", "HUEYARD_SMTP_FROM")
"""The 0.1.0 names: refused with the new name, so a relay is never dropped silently."""

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
MAX_REPLY = 300
"""Characters of a relay's answer kept in a job's error."""


class SmtpSettings(BaseModel):
    """Where and as whom to send. ``repr`` and errors never show the password."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:_-]{1,253}$")]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    password: Annotated[SecretStr, Field(min_length=1)] | None = None
    sender: Annotated[str, Field(alias="from", min_length=3, max_length=320)]
    timeout: Annotated[float, Field(gt=0, le=300)] = DEFAULT_TIMEOUT
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError(
                "SMTP_USER and SMTP_PASSWORD go together: set both to log in, or neither"
            )
        _, address = email.utils.parseaddr(self.sender)
        if "@" not in address or any(c in self.sender for c in "\r\n"):
            raise ValueError(
                "from (SMTP_FROM) must be an address, 'crm@example.com' or "
                "'Example CRM <crm@example.com>'"
            )
        if self.username is not None and self.security == "none" and not _loopback(self.host):
            raise ValueError(
                "security 'none' with SMTP_USER would send the password in clear to "
                f"{self.host}; use SMTP_SECURITY=starttls or tls"
            )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file (SMTP_CA_FILE) {str(self.ca_file)!r} is not a file")
        return self

    @property
    def address(self) -> str:
        """The envelope sender: the address part of ``from``."""
        return email.utils.parseaddr(self.sender)[1]

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]

    @property
    def where(self) -> str:
        return f"SMTP relay {self.host}:{self.effective_port} ({self.security})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What a relay's answer may echo and an error may not show: the password, and the
        AUTH PLAIN argument that carries it (:func:`pipelines._http.hide_secrets` hides its
        base64 form too)."""
        if self.password is None:
            return ()
        password = self.password.get_secret_value()
        return password, f"\0{self.username}\0{password}"


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def smtp_settings(
    env: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None
) -> SmtpSettings | None:
    """The settings from ``config`` (``[providers.smtp]``) overridden by ``env``.

    None when no host is set anywhere: the dry run. A bad or missing value
    raises :class:`SenderConfigError` naming the variable and the fix.
    """
    env = os.environ if env is None else env
    merged = merged_settings(config, env, ENVIRONMENT)
    if not str(merged.get("host", "")).strip():
        renamed = [name for name in RENAMED if env.get(name, "").strip()]
        if renamed:
            raise SenderConfigError(
                f"{', '.join(renamed)} are no longer read: use SMTP_HOST, SMTP_PORT and "
                "SMTP_FROM; SMTP_SECURITY defaults to starttls, set it to none for a local "
                "relay without TLS (what 0.1.0 did)"
            )
        return None
    if "from" not in merged:
        raise SenderConfigError(
            f"SMTP_HOST is set but SMTP_FROM is not (nor from in {CONFIG_TABLE}); set the "
            "sender address your relay accepts, e.g. SMTP_FROM='Example CRM <crm@example.com>'"
        )
    try:
        return SmtpSettings.model_validate(merged)
    except ValidationError as exc:
        raise SenderConfigError(
            f"SMTP settings ({', '.join(ENVIRONMENT.values())} or {CONFIG_TABLE}) are not "
            f"valid: {validation_summary(exc)}"
        ) from None


# -- the relay's answers --------------------------------------------------------------------

AUTH_CODES = (530, 534, 535, 538)
"""Authentication required / mechanism too weak / credentials invalid / encryption
required: the settings are wrong, a retry fails the same way."""


def _reply(code: int, text: bytes | str, settings: SmtpSettings) -> str:
    """The relay's answer on one line, shortened, without the credentials it may echo."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = " ".join(hide_secrets(text, *settings.secrets).split())
    if len(line) > MAX_REPLY:
        line = line[:MAX_REPLY] + "..."
    return f"{code} {line}"


def error_for(settings: SmtpSettings, stage: str, code: int, text: bytes | str) -> Exception:
    """The send exception for the relay's answer ``code`` to ``stage`` (``MAIL FROM``...)."""
    answer = f"{settings.where} answered {_reply(code, text, settings)} to {stage}"
    if code in AUTH_CODES:
        return SenderConfigError(
            f"{answer} [authentication or TLS required: check SMTP_USER, SMTP_PASSWORD and "
            "SMTP_SECURITY; failed at once, not retried]"
        )
    if 500 <= code < 600:
        return SendRefused(f"{answer} [permanent; failed at once, not retried]")
    return SendError(f"{answer} [temporary; retried after the queue's backoff]")


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    return ssl.create_default_context(cafile=cafile)


def _tls_failure(settings: SmtpSettings, exc: ssl.SSLError) -> SenderConfigError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = f"its certificate is not trusted ({exc.verify_message})"
        fix = "give the relay's CA in SMTP_CA_FILE, or check SMTP_HOST"
    else:
        why = f"TLS failed ({exc.reason or type(exc).__name__})"
        fix = "port 465 speaks implicit TLS (SMTP_SECURITY=tls), 587 and 25 STARTTLS"
    return SenderConfigError(f"{settings.where}: {why}; {fix}. Failed at once, not retried")


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    """An open, secured and logged-in session."""
    host, port, timeout = settings.host, settings.effective_port, settings.timeout
    try:
        if settings.security == "tls":
            smtp: smtplib.SMTP = _BoundedSMTPSSL(
                host, port, timeout=timeout, context=_tls_context(settings)
            )
        else:
            smtp = _BoundedSMTP(host, port, timeout=timeout)
    except ssl.SSLError as exc:
        raise _tls_failure(settings, exc) from None
    except smtplib.SMTPConnectError as exc:
        raise error_for(settings, "the connection", exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(
            f"{settings.where}: not reached ({type(exc).__name__}: {exc}); retried after the "
            "queue's backoff"
        ) from None
    try:
        _secure_and_login(smtp, settings)
    except BaseException:
        smtp.close()
        raise
    return smtp


def _secure_and_login(smtp: smtplib.SMTP, settings: SmtpSettings) -> None:
    try:
        if settings.security == "starttls":
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise SenderConfigError(
                    f"{settings.where} does not offer STARTTLS; check SMTP_HOST and SMTP_PORT "
                    "(465 is implicit TLS: SMTP_SECURITY=tls). Failed at once, not retried"
                )
            code, text = smtp.starttls(context=_tls_context(settings))
            if code != 220:
                raise error_for(settings, "STARTTLS", code, text)
        if settings.username is not None and settings.password is not None:
            smtp.ehlo_or_helo_if_needed()
            if not smtp.has_extn("auth"):
                raise SenderConfigError(
                    f"{settings.where} does not offer AUTH (at this stage); many relays offer "
                    "it only over TLS: check SMTP_SECURITY. Failed at once, not retried"
                )
            smtp.login(settings.username, settings.password.get_secret_value())
    except smtplib.SMTPAuthenticationError as exc:
        raise SenderConfigError(
            f"{settings.where} refused the login: "
            f"{_reply(exc.smtp_code, exc.smtp_error, settings)}; "
            "check SMTP_USER and SMTP_PASSWORD (your relay's SMTP credentials). Failed at "
            "once, not retried"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        said = hide_secrets(str(exc), *settings.secrets)
        raise SenderConfigError(f"{settings.where}: {said}; check SMTP_SECURITY") from None
    except ssl.SSLError as exc:
        raise _tls_failure(settings, exc) from None
    except smtplib.SMTPResponseException as exc:
        raise error_for(settings, "the login", exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        raise SendError(
            f"{settings.where}: the connection failed before sending ({type(exc).__name__}); "
            "retried after the queue's backoff"
        ) from None
    except smtplib.SMTPException as exc:  # "No suitable authentication method found."
        said = hide_secrets(str(exc), *settings.secrets)
        raise SenderConfigError(f"{settings.where}: {said}; check SMTP_SECURITY") from None


def deliver(settings: SmtpSettings, message: EmailMessage, recipient: str) -> None:
    """Send ``message`` to ``recipient`` (the envelope's RCPT TO) from ``settings.address``.

    Returns when the relay took the message (250 after DATA); raises as the module
    docstring says otherwise.
    """
    if not recipient.isascii() or not settings.address.isascii():
        raise SendRefused(
            "an address with non-ASCII characters needs SMTPUTF8, which this sender does not "
            "use; failed at once, not retried"
        )
    data = message.as_bytes(policy=email.policy.SMTP)
    with deadline(settings.timeout * DEADLINE_FACTOR):
        _deliver(settings, data, recipient)


def _deliver(settings: SmtpSettings, data: bytes, recipient: str) -> None:
    smtp = _connect(settings)
    try:
        try:
            code, text = smtp.mail(settings.address)
            if code != 250:
                raise error_for(settings, "MAIL FROM", code, text)
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise error_for(settings, "RCPT TO", code, text)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise SendError(
                f"{settings.where}: the connection failed before the message was sent "
                f"({type(exc).__name__}); retried after the queue's backoff"
            ) from None
        try:
            code, text = smtp.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing was handed over
            raise error_for(settings, "DATA", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise SendOutcomeUnknown(
                f"{settings.where}: the connection failed while the message was handed over "
                f"({type(exc).__name__}); the relay may have taken it, so it is not sent "
                "again: check the relay's log, then enqueue a new job if it is missing"
            ) from None
        if code != 250:
            raise error_for(settings, "the message (end of DATA)", code, text)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
