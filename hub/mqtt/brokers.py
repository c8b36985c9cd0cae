"""Where the MQTT brokers are and how to reach them: their URLs, the TLS files and the client's last will."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hub.redact import redact


class BrokerUrlError(ValueError):
    """An MQTT URL that cannot be used."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and how to log in: parsed from ``mqtt[s]://[user[:password]@]host[:port]``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BrokerUrlError(f"{redact(url)!r} is not an MQTT URL (mqtt://host[:port] or mqtts://host[:port])")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise BrokerUrlError(f"{redact(url)!r}: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        # an IPv6 address in brackets, as a URL writes it: what a log line or /api/health shows pastes back
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_urls(value: str) -> tuple[BrokerAddress, ...]:
    """``mqtt://node1:1883,mqtt://node2:1883``: the brokers to try in turn (a comma in a password is ``%2C``)."""
    addresses = tuple(BrokerAddress.parse(part.strip()) for part in value.split(",") if part.strip())
    if not addresses:
        raise BrokerUrlError(f"{value!r} names no MQTT broker")
    return addresses


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True
