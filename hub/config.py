"""Hub configuration: a TOML file, then ``WMHUB_*`` environment variables, then command-line flags.

Everything is validated by pydantic; :func:`load_config` turns the first problem into one
:class:`ConfigError` line that names the key (``mqtt.keepalive: ...``), which the CLI prints before
exiting with status 2.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import socket
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hub.redact import SECRET_KEYS, redact
from hub.text import family_key, preview

ENV_PREFIX = "WMHUB_"
# a token typed by hand shorter than this is guessable over the LAN; generated ones have 43 characters
MIN_TOKEN_LENGTH = 16
# Variables that are no setting of the hub's. WMHUB_LOAD_PLUGINS chooses the plugins to load (hub.plugins).
# WMHUB_MQTT_PASSWORD is the broker login's password in docker-compose.yml's .env (deploy/mosquitto writes
# the broker's password file from it); the hub gets it inside WMHUB_MQTT__URL. A shell that sourced .env
# must still start the hub.
# WMHUB_CONFIG names the configuration file when --config does not (a container's environment).
CONFIG_ENV: Final = "WMHUB_CONFIG"
_NON_SETTING_ENV = {"WMHUB_LOAD_PLUGINS", CONFIG_ENV, "WMHUB_MQTT_PASSWORD"}


class ConfigError(Exception):
    """A configuration problem, phrased for the person who wrote the file."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        """``keepalive = true`` is a slip, not 1: pydantic would take it as a number."""
        if isinstance(value, bool) and info.field_name and _takes_number(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number, not true or false")
        return value


def _kinds(annotation: Any) -> tuple[Any, ...]:
    """The types a setting's annotation allows: ``X | None`` gives ``(X, None)``, ``X`` gives ``(X,)``."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def _takes_number(annotation: Any) -> bool:
    """Whether a setting of this type holds a number (``int``, ``float | None``, ``Literal[0, 1, 2]``)."""
    return any(
        kind in (int, float)
        or (typing.get_origin(kind) is Literal and all(type(choice) is int for choice in typing.get_args(kind)))
        for kind in _kinds(annotation)
    )


# A path setting: "~" is the home directory wherever the value came from (systemd and Docker do not expand
# it in their environment, nor TOML). A relative path from the file is anchored at the file's folder by
# load_config; from the environment or the command line it stays relative to the working directory.
def expand_home(path: Path) -> Path:
    """``~`` and ``~user`` as a shell reads them; a user this machine does not know is a mistake in the value,
    said as one (Path.expanduser raises RuntimeError, which stopped the hub with a traceback)."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ValueError(f"{path.parts[0]} is no user's home directory on this machine") from None


def _not_empty(value: Any) -> Any:
    """An empty path is the working directory (``/`` under systemd): what an unset variable gives
    (``WMHUB_DATA_DIR=`` in a unit or compose file), never a place chosen; refused as ``--data-dir ""`` is."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty (an unset variable?): an empty path would be the working directory; give a path")
    return value


SettingPath = Annotated[Path, BeforeValidator(_not_empty), AfterValidator(expand_home)]


# what a URL's user name or password cannot hold as it is: a delimiter, or a '%' that begins no escape
_RAW_IN_LOGIN: Final = re.compile(r"[/?#\[\]]|%(?![0-9A-Fa-f]{2})")


class MqttSettings(Section):
    url: str = Field(
        default="embedded",
        description="embedded | off | mqtt://[user:pass@]host:port | mqtts://...; cluster nodes comma-separated",
    )
    base_topic: str = "wmhub"
    client_id: str | None = None
    keepalive: int = Field(default=60, ge=5, le=3600)
    qos_state: Literal[0, 1, 2] = 1
    qos_meters: Literal[0, 1, 2] = 0
    qos_subscriptions: int | None = Field(
        default=None,
        ge=0,
        le=2,
        description="highest QoS the hub subscribes with (default: qos_state); 0 on a RabbitMQ cluster",
    )
    meter_interval_s: float = Field(default=0.5, gt=0, le=60, description="least time between meter messages")
    meter_threshold_db: float = Field(default=0.5, ge=0, description="smallest meter move worth publishing")
    ca_file: SettingPath | None = None
    cert_file: SettingPath | None = None
    key_file: SettingPath | None = None
    tls_insecure: bool = Field(default=False, description="skip broker certificate verification (not advised)")
    homeassistant: bool = True
    homeassistant_prefix: str = "homeassistant"
    homeassistant_meter_entities: bool = Field(
        default=False,
        description="create Home Assistant's RF level, RF quality and audio level entities enabled (recorder load)",
    )
    control: bool = Field(default=True, description="accept set/get and bridge requests over MQTT")
    admin: bool = Field(
        default=False,
        description="accept device/add, device/remove and candidate/approve over MQTT (who may publish them "
        "is the broker's ACL: docs/mqtt.md, Securing the broker)",
    )
    max_payload_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="larger inbound messages are refused unread"
    )
    embedded_port: int = Field(default=1883, ge=0, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _no_token_in_payloads(cls, data: Any) -> Any:
        if isinstance(data, dict) and "require_token" in data:
            raise ValueError(
                "mqtt.require_token was removed: the API token no longer travels in MQTT payloads, where every "
                "subscriber could read it; secure the broker instead (docs/mqtt.md, Securing the broker)"
            )
        return data

    @property
    def subscription_qos(self) -> int:
        """The QoS the hub subscribes with: ``qos_subscriptions``, or ``qos_state`` when that is unset."""
        return self.qos_state if self.qos_subscriptions is None else self.qos_subscriptions

    @field_validator("url", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        """A TOML list of brokers (the nodes of a cluster) is kept as the comma-separated form of env and CLI."""
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return ",".join(value)
        return value

    @field_validator("url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        # the messages never repeat a URL: it may hold the broker password
        if value in ("embedded", "off"):
            return value
        urls = [part.strip() for part in value.split(",")]
        if any("@" in url and not re.match(r"^mqtts?://", url) for url in urls[1:]):
            raise ValueError("a comma separates brokers: in a password, write ',' as %2C")
        for url in urls:
            if not re.match(r"^mqtts?://", url):
                raise ValueError("must be 'embedded', 'off', or mqtt:// or mqtts:// URLs separated by commas")
            # urlsplit would read what follows such a character as the port, path, query or fragment, and the
            # messages below would blame those; the login is what the user meant up to the last '@'
            if _RAW_IN_LOGIN.search(url.split("://", 1)[1].rpartition("@")[0]):
                raise ValueError(
                    "a password or user name in a URL must have / ? # [ ] and % percent-encoded: "
                    "'/' as %2F, '?' as %3F, '#' as %23, '[' as %5B, ']' as %5D, '%' as %25"
                )
            try:
                parts = urlsplit(url)
                port = parts.port
            except ValueError:
                raise ValueError("the host or port of a URL cannot be read (a bad port, or an unclosed '[')") from None
            if not parts.hostname:
                raise ValueError("a URL names no broker host (mqtt://host[:port])")
            if port == 0:
                raise ValueError("port 0 is not a broker port")
            # urlsplit drops line breaks and tabs itself, and would read what follows as part of the host
            if any(char.isspace() or not char.isprintable() for char in url):
                raise ValueError("a URL holds a space or a control character (in a password, write a space as %20)")
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(
                    "a URL has a path, '?' or '#' part, which the hub would ignore (mqtt://[user:pass@]host[:port]; "
                    "in a password, write '/' as %2F, '?' as %3F, '#' as %23)"
                )
        return ",".join(urls)

    @field_validator("base_topic", "homeassistant_prefix")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if not value or any(char in value for char in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError("must be a topic prefix without wildcards or leading/trailing '/'")
        return value


class HttpSettings(Section):
    """The board and REST API. Hardening (docs/api.md, "Hardening"): a client must finish each request's
    headers within ``header_timeout_s`` and may hold ``max_connections_per_client`` connections at once;
    a request whose Host header names neither ``host``, ``localhost``, this machine's name or one of its
    addresses, nor one of ``allowed_hosts``, is refused (DNS rebinding)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8058, ge=0, le=65535)
    token: str | None = Field(
        default=None,
        min_length=MIN_TOKEN_LENGTH,
        description=f"API token for writes, at least {MIN_TOKEN_LENGTH} characters; generated at first start if unset",
    )
    open_reads: bool = Field(default=True, description="allow reads without the token (trusted LAN)")

    @field_validator("token", mode="before")
    @classmethod
    def _stripped_token(cls, value: Any) -> Any:
        """A token from an env or secret file often ends in a line break: it is stripped, as every client's
        token is, and its length counted without it. Whitespace or a control character inside it is a
        mistake no client could type back, refused. The messages never repeat the token."""
        if not isinstance(value, str):
            return value
        token = value.strip()
        if not token:
            raise ValueError("is empty once the whitespace around it is removed")
        if any(char.isspace() or not char.isprintable() for char in token):
            raise ValueError("must not contain whitespace or control characters inside it")
        return token

    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="more names the hub may be reached by (Host header), e.g. wmhub.venue.lan"
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a request whose headers are not all in by then is dropped"
    )
    max_connections_per_client: int = Field(
        default=64, ge=1, le=100_000, description="open connections one client address may hold"
    )
    enabled: bool = True
    live_interval_s: float = Field(default=0.5, ge=0.05, le=60, description="least time between live updates")
    live_queue: int = Field(default=16, ge=1, le=1000, description="live messages a browser may lag before drop")


class DiscoverySettings(Section):
    enabled: bool = True
    auto_approve: bool = False
    interfaces: list[str] | None = Field(
        default=None, description="IPv4 addresses to look for devices on (mDNS, plugins' own listeners); default: all"
    )

    @field_validator("interfaces")
    @classmethod
    def _addresses(cls, interfaces: list[str] | None) -> list[str] | None:
        for address in interfaces or ():
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{preview(address)} is not an IP address (one of this machine's)") from None
            if parsed.version == 6:
                raise ValueError(f"{address} is IPv6: mDNS listens on IPv4 addresses only (give one of those)")
        return interfaces


class TunableBand(Section):
    low_mhz: float = Field(ge=1.0, le=10_000.0)
    high_mhz: float = Field(ge=1.0, le=10_000.0)
    step_khz: float = Field(default=25.0, gt=0, le=10_000.0)

    @model_validator(mode="after")
    def _low_below_high(self) -> TunableBand:
        if self.low_mhz >= self.high_mhz:
            raise ValueError(f"low_mhz ({self.low_mhz:g}) must be below high_mhz ({self.high_mhz:g})")
        return self


class FrequencyConfig(Section):
    """Frequency coordination (docs/frequency-coordination.md)."""

    profile: Literal["robust", "standard", "dense"] = Field(default="standard", description="how much room guards keep")
    seventh_order: bool = Field(default=False, description="also check 4f1-3f2")
    max_live_carriers: int = Field(
        default=1000,
        ge=0,
        le=100_000,
        description="the most carriers the live check and a search take on (0: no live check, searches up to "
        "1,000); both grow with the square of the count, and a larger plan is better coordinated in parts",
    )
    bands: dict[str, TunableBand] = Field(
        default_factory=dict,
        description="per family (`ulxd`) or band variant (`slxd-g58`: family and the band code the device reports), "
        "where its devices tune (for suggestions and band checks)",
    )

    @field_validator("bands")
    @classmethod
    def _distinct_band_keys(cls, bands: dict[str, TunableBand]) -> dict[str, TunableBand]:
        # keys are compared as families are (case, and runs of other characters, ignored): two keys that read
        # alike would leave it to their order which band a receiver gets, and a key of punctuation matches none
        seen: dict[str, str] = {}
        for key in bands:
            name = family_key(key)
            if not name:
                raise ValueError(f"key {key!r} names no family: use letters or digits")
            if name in seen:
                raise ValueError(f"keys {seen[name]!r} and {key!r} name the same family ({name})")
            seen[name] = key
        return bands


# where the database and API token live unless data_dir says (`wmhub run --help` and README say it as written)
DEFAULT_DATA_DIR: Final = "~/.local/share/wmhub"

# the demo's hub id unless one is given: docs/mqtt.md's commands address wmhub/hubs/demo/..., copied as they are
DEMO_HUB_ID: Final = "demo"


def _default_hub_id() -> str:
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", socket.gethostname()) or "hub"
    return f"wmhub-{name}"


class HubConfig(Section):
    # a topic level on MQTT and part of the client id: brokers limit both (Mosquitto's client id to 65,535)
    hub_id: str = Field(default_factory=_default_hub_id, pattern=r"^[a-zA-Z0-9_-]+$", max_length=64)
    data_dir: SettingPath = Field(default_factory=lambda: expand_home(Path(DEFAULT_DATA_DIR)))
    devices: list[str] = Field(default_factory=list, description="device URLs, e.g. shure://10.0.0.5")
    demo: bool = False
    meter_rate_ms: int | None = Field(
        default=None,
        ge=100,
        le=99999,
        description="device metering interval; unset, as fast as the fastest consumer present needs (hub.metering)",
    )
    offline_after_s: float = Field(default=10.0, gt=0, le=3600)
    io_timeout_s: float = Field(default=5.0, gt=0, le=120)
    max_connecting: int = Field(
        default=200,
        ge=1,
        le=100_000,
        description="devices connecting at once; the rest wait their turn (a hub starting at a large site)",
    )
    command_timeout_s: float = Field(default=5.0, gt=0, le=120)
    control_rate_per_s: float = Field(
        default=10.0, gt=0, le=1000, description="control commands a device accepts per second; a flood is refused"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    plugin_log_levels: dict[str, Literal["debug", "info", "warning", "error"]] = Field(default_factory=dict)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    frequency: FrequencyConfig = Field(default_factory=FrequencyConfig)
    # where load_config found the settings, most binding first: (source, settings given there)
    _layers: tuple[tuple[str, Mapping[str, Any]], ...] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _demo_hub_id(self) -> HubConfig:
        if self.demo and "hub_id" not in self.model_fields_set:
            self.hub_id = DEMO_HUB_ID
        return self

    def named(self, key: str) -> str:
        """``key`` (``http.port``) as a refused setting names it, with where its value came from:
        ``environment (WMHUB_HTTP__PORT): http.port``, ``/etc/wmhub/wmhub.toml: http.port``,
        ``http.port (default)`` when nothing set it; the bare key for a configuration built in code."""
        if self._layers is None:
            return key
        source = _source(key.split("."), self._layers)
        return f"{source}: {key}" if source else f"{key} (default)"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``WMHUB_MQTT__URL=...`` sets ``mqtt.url``; lists are comma-separated (``WMHUB_DEVICES=a,b``)."""
    result: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in _NON_SETTING_ENV:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        target = result
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):  # WMHUB_MQTT=x and WMHUB_MQTT__URL=y both set
                raise ConfigError(f"environment: {key} clashes with another WMHUB_ variable that sets {part!r}")
        leaf = path[-1]
        annotation = _setting_annotation(path)
        if any(typing.get_origin(kind) in (list, tuple, set, frozenset) for kind in _kinds(annotation)):
            target[leaf] = _env_list(value)
        elif _literal_number(annotation):
            target[leaf] = _env_number(value)
        else:
            target[leaf] = value
    return result


def _setting_annotation(path: list[str]) -> Any:
    """The type of the setting at ``path`` (``["http", "allowed_hosts"]``), through sections and tables of
    them (``["frequency", "bands", "ulxd", "low_mhz"]``: the table's key is any name); None when ``path``
    names no setting (refused as unknown by the check)."""
    annotation: Any = HubConfig
    for part in path:
        kinds = _kinds(annotation)
        model = next((kind for kind in kinds if isinstance(kind, type) and issubclass(kind, BaseModel)), None)
        table = next((kind for kind in kinds if typing.get_origin(kind) is dict), None)
        if model is not None:
            field = model.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif table is not None:
            annotation = typing.get_args(table)[1]
        else:
            return None
    return annotation


def _literal_number(annotation: Any) -> bool:
    """Whether a setting of this type is one of a few numbers (``Literal[0, 1, 2]``), which pydantic, unlike an
    ``int`` setting, never takes from text: the environment's ``"1"`` must become the number first."""
    return _takes_number(annotation) and not any(kind in (int, float) for kind in _kinds(annotation))


_INTEGER: Final = TypeAdapter(int)


def _env_number(value: str) -> Any:
    """An environment value for a ``Literal[0, 1, 2]`` setting as the number it reads as, by the rules an ``int``
    setting's text is read by (``" 1 "`` and ``"1.0"`` are 1; ``"true"`` is no number); text that is none is
    left as it is, for the setting's check to refuse naming the variable and the choices."""
    try:
        return _INTEGER.validate_python(value)
    except ValidationError:
        return value


def _env_list(value: str) -> Any:
    """A list from the environment: a JSON array, or items separated by commas (``a, b``)."""
    if value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except ValueError:  # not JSON, or an integer longer than CPython converts (4,300 digits)
            return value  # refused by the setting's check, naming the variable's key
    return [item.strip() for item in value.split(",") if item.strip()]


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    got = first.get("input")
    key = str(first["loc"][-1]).lower() if first["loc"] else ""
    # an unknown key's value is never shown: it may be a secret under a misspelt name (WMHUB_MQTT_PASWORD)
    secret = first["type"] == "extra_forbidden" or any(word in key for word in SECRET_KEYS)
    shown = got is not None and not secret and not isinstance(got, dict | list)
    # a string redacted before it is quoted: a password's mask runs to the next space and would take the quote;
    # shown in part (a 100 KB value makes no readable line)
    quoted = preview(redact(got)) if isinstance(got, str) else redact(repr(got))
    detail = f" (got {quoted})" if shown else ""
    more = len(error.errors()) - 1
    tail = f"; and {more} more problem{'s' if more > 1 else ''}" if more else ""
    return f"{source}: {location}: {message}{detail}{tail}"


# far above any hub's configuration: a larger file is a log or a disk image given by mistake
MAX_CONFIG_BYTES: Final = 1024 * 1024


def _config_text(path: Path) -> str:
    """The file's text, refused unread when it is no regular file (a FIFO would block for ever, /dev/zero
    never end) or larger than MAX_CONFIG_BYTES. A UTF-8 byte order mark (Windows Notepad writes one) is
    dropped."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise ConfigError(f"{path}: not a regular file")
    with path.open("rb") as file:
        data = file.read(MAX_CONFIG_BYTES + 1)  # the size once read: the file may have grown since
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, too large to be a configuration")
    return data.decode("utf-8-sig")


def _read_config(path: Path) -> dict[str, Any]:
    """The file's settings, its relative paths anchored at its folder; ConfigError naming the file."""
    try:
        data = tomllib.loads(_config_text(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except ValueError as exc:  # tomllib passes on int()'s refusal of an integer of more than 4,300 digits
        # without int()'s advice to raise the interpreter's limit, which is no setting of the hub's
        raise ConfigError(f"{path}: not valid TOML ({str(exc).partition(';')[0]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration") from None
    _anchor_paths(data, HubConfig, path.absolute().parent)
    return data


def _anchor_paths(settings: dict[str, Any], model: type[BaseModel], folder: Path) -> None:
    """Make each relative path setting in ``settings`` (a file's) relative to ``folder``, the file's: the
    hub's working directory (``/`` under systemd) has nothing to do with where the file's author meant."""
    for name, field in model.model_fields.items():
        value = settings.get(name)
        if isinstance(value, dict):
            for kind in _kinds(field.annotation):
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    _anchor_paths(value, kind, folder)
        elif isinstance(value, str) and value.strip() and _holds_path(field.annotation):  # an empty one is refused
            with contextlib.suppress(ValueError):  # an unknown ~user: the setting's check says so, naming it
                settings[name] = str(folder / expand_home(Path(value)))  # an absolute path stays as it is


def _holds_path(annotation: Any) -> bool:
    """Whether a setting of this type is a path (``SettingPath``, which inside ``| None`` stays Annotated)."""
    return any(kind is Path or typing.get_args(kind)[:1] == (Path,) for kind in _kinds(annotation))


# the source of the settings from the environment, named by the variable that gave each
_ENVIRONMENT: Final = "environment"


def _source(loc: list[str], layers: tuple[tuple[str, Mapping[str, Any]], ...], message: str = "") -> str | None:
    """Which layer (most binding first) gives the value at ``loc``: ``command line``, ``environment
    (WMHUB_MQTT__URL)`` or the file's path; None when none does (a default)."""
    for source, settings in layers:
        given = _given(settings, loc, message)
        if given is _NOT_GIVEN:
            continue
        if source != _ENVIRONMENT:
            return source
        keys = list(itertools.takewhile(lambda part: not part.isdigit(), loc))
        return f"environment ({', '.join(_variables(keys, given, message))})"
    return None


def _variables(keys: list[str], given: Any, message: str) -> list[str]:
    """The variables that gave ``given``, the environment's value at ``keys``: ``WMHUB_MQTT__URL``; for a table
    (``frequency.bands.ulxd``), one variable per key, of the keys the message names if it names any."""
    if not isinstance(given, Mapping):
        return [f"{ENV_PREFIX}{'__'.join(keys).upper()}"]
    prefix = ".".join(keys) + "."
    named = [key for key in given if f"{prefix}{key}" in message] or list(given)
    return [variable for key in named for variable in _variables([*keys, key], given[key], message)]


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HubConfig:
    """Read the file (``path``, else the one ``WMHUB_CONFIG`` names, if any), apply environment then
    ``overrides``; raise ConfigError on any problem."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "configuration"
    if path is None and CONFIG_ENV in environ:
        if not environ[CONFIG_ENV].strip():  # not "no file": the file meant would go unread, without a word
            raise ConfigError(f"environment ({CONFIG_ENV}): is empty (an unset variable?): name the file, or unset it")
        try:
            path = expand_home(Path(environ[CONFIG_ENV]))
            data = _read_config(path)
        except (ConfigError, ValueError) as exc:  # a file named by a variable the reader may not know is set
            raise ConfigError(f"environment ({CONFIG_ENV}): {exc}") from None
    elif path is not None:
        try:
            path = expand_home(path)
        except ValueError as exc:
            raise ConfigError(f"--config: {exc}") from None
        data = _read_config(path)
    if path is not None:
        source = str(path)
    from_env = _env_overrides(environ)
    layers = (("command line", overrides or {}), (_ENVIRONMENT, from_env), (source, data))
    data = _merge(_merge(data, from_env), overrides or {})
    try:
        config = HubConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        # a key left out of a table is missing from the layer that gave the table, which no layer's key names
        given = loc[:-1] if first["type"] == "missing" and len(loc) > 1 else loc
        raise ConfigError(_describe(exc, _source(given, layers, first["msg"]) or source)) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a configuration") from None
    config._layers = layers
    return config


_NOT_GIVEN: Final = object()


def _given(settings: Mapping[str, Any], loc: list[str], message: str) -> Any:
    """What ``settings`` gives at ``loc`` (or the part of it that holds the value), else ``_NOT_GIVEN``. A check
    of a whole section (``[mqtt]`` refusing a removed key) names the key it refuses: the section is given only
    by the settings that give that key, not by whichever sets anything else in the section."""
    found: Any = settings
    for part in loc:
        if isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        elif isinstance(found, Mapping) and part in found:
            found = found[part]
        else:
            return _NOT_GIVEN
    prefix = ".".join(loc) + "."
    if isinstance(found, Mapping) and prefix in message and not any(f"{prefix}{key}" in message for key in found):
        return _NOT_GIVEN
    return found
