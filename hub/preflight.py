"""What ``wmhub run`` checks before it starts anything, so a mistake costs one line and exit status 2.

pydantic (hub.config) checks each setting's shape; these checks need the machine or the plugins: device
URLs against the loaded plugins' schemes, the data dir, the MQTT TLS files, and the HTTP (and embedded MQTT)
address: does the host resolve, is the port free. A port taken between this check and the bind is the
only gap; the hub then stops cleanly and exits 1 (hub.cli).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import ifaddr

from hub.config import ConfigError, HubConfig
from hub.persistence import DATABASE_FILE
from hub.persistence.db import stored_schema_version
from hub.persistence.schema import MIGRATIONS
from hub.plugins import UrlCheckFailedError
from hub.redact import redact
from hub.text import preview

log = logging.getLogger("hub")

EMBEDDED_HOST: Final = "127.0.0.1"
EMBEDDED_KEYS: Final = ("mqtt.url", "mqtt.embedded_port")
# there is no flag for the embedded broker's port: a refusal of it says where else it is set
EMBEDDED_PORT_CHOICES: Final = (
    "choose another with WMHUB_MQTT__EMBEDDED_PORT=<port> or mqtt.embedded_port in the config file "
    "(0: any free port), or use a broker already running with --mqtt mqtt://host:port"
)


def move_demo_broker_off_a_taken_port(config: HubConfig) -> int | None:
    """The demo on a machine that already runs an MQTT broker on 1883 (most home-automation machines): when
    the embedded broker's port is the default, not one the user set (config file or environment), and it is
    taken, a free port is chosen instead and returned, so the README's first command works there; None when
    the port stays. A port the user set stays: ``check_startup`` refuses it if it is taken."""
    mqtt = config.mqtt
    if not config.demo or mqtt.url != "embedded" or "embedded_port" in mqtt.model_fields_set:
        return None
    try:
        _check_listen(EMBEDDED_KEYS, EMBEDDED_HOST, mqtt.embedded_port)
    except ConfigError:
        with socket.socket() as probe:
            probe.bind((EMBEDDED_HOST, 0))
            mqtt.embedded_port = int(probe.getsockname()[1])
        return mqtt.embedded_port
    return None


def check_startup(
    config: HubConfig,
    resolve_device: Callable[[str], object],
    device_origin: Callable[[str], str] = lambda _url: "devices",
    *,
    only_checking: bool = False,
    database: bool = True,
) -> None:
    """Raise ConfigError naming the key (or flag) of the first setting the hub could not start with, and
    where its value came from (HubConfig.named). A hub already running on the data dir (holding its lock) is
    named before the ports it holds, which a second start of its configuration would otherwise blame.
    ``only_checking`` (``wmhub run --check``, which changes nothing): a missing data dir is only checked to be
    one this process could create, and beside the hub running on the data dir, whose configuration it checks,
    that hub's ports count as free. ``database`` off (the fleet board, which keeps only its API token in the
    data dir): a hub running there is no mistake.

    ``resolve_device`` raises ValueError for a URL no loaded plugin can use (DeviceManager.resolve);
    ``device_origin`` names where a device URL came from (``--device``, ``WMHUB_DEVICES``, a file).
    """
    for url in config.devices:
        try:
            resolve_device(url)
        except UrlCheckFailedError:  # a plugin's bug, logged naming it: the hub starts without that device
            continue
        except ValueError as exc:  # EndpointError, UnknownSchemeError, or urllib refusing it ("x://[")
            raise ConfigError(f"{device_origin(url)}: {redact(str(exc))}") from None
    _check_data_dir(config.named("data_dir"), config.data_dir, create=not only_checking)
    beside_running_hub = False
    if database and (holder := running_hub_on(config.data_dir)) is not None:
        if not only_checking:
            raise _in_use(config.named("data_dir"), config.data_dir, holder)
        beside_running_hub = True  # its database is the running hub's, which opened it
    elif database:
        _check_schema(config.named("data_dir"), config.data_dir / DATABASE_FILE)
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(config.mqtt, key)
        if path is not None and config.mqtt.url != "off":
            _check_readable(config.named(f"mqtt.{key}"), Path(path))
    if config.http.enabled:
        _check_listen(
            (config.named("http.host"), config.named("http.port")),
            config.http.host,
            config.http.port,
            beside_running_hub,
        )
    if config.mqtt.url == "embedded":
        embedded = config.mqtt.embedded_port
        if config.http.enabled and embedded != 0 and embedded == config.http.port:
            raise ConfigError(
                f"{config.named('mqtt.embedded_port')}: {embedded} is http.port too; the two need ports of their own"
            )
        try:
            _check_listen(
                (config.named("mqtt.url"), config.named("mqtt.embedded_port")),
                EMBEDDED_HOST,
                embedded,
                beside_running_hub,
            )
        except ConfigError as exc:
            raise ConfigError(f"{exc}; {EMBEDDED_PORT_CHOICES}") from None
    if config.discovery.enabled:
        check_discovery_interfaces(config)


def _check_readable(key: str, path: Path) -> None:
    """``path`` is a file this process can read: it is opened and read, as the TLS setup will (a key file
    of mode 600 owned by root passed an ``is_file`` check, and the hub then stopped with a bare "Permission
    denied" naming no file; ``os.access`` would answer for the real user id, not what ``open`` does)."""
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a readable file")
    try:
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigError(f"{key}: {path} cannot be read ({exc.strerror or exc})") from None


def check_discovery_interfaces(config: HubConfig, key: str | None = None) -> None:
    """Raise ConfigError if an address in ``discovery.interfaces`` is not one of this machine's; ``key``
    names where the addresses came from (default: the setting and its source)."""
    for address in config.discovery.interfaces or ():
        _check_own_address(key or config.named("discovery.interfaces"), address)


# Held (flock) by the hub that uses the data dir, for its whole life; it holds that hub's pid.
LOCK_FILE: Final = "wmhub.lock"


class DataDirLock:
    """``<data_dir>/wmhub.lock``, held (flock) for as long as the hub runs: two hubs on one database would each
    count ids from what they loaded and overwrite each other's performers and audit entries. The kernel drops
    the lock when its process ends, however it ends, so a lock left by a dead hub never blocks."""

    def __init__(self, data_dir: Path, file: IO[str]) -> None:
        self.data_dir = data_dir
        self._file = file

    @classmethod
    def take(cls, data_dir: Path, key: str = "data_dir") -> DataDirLock | None:
        """The lock, or ConfigError if another running hub holds it. None when the lock file can be neither
        created nor opened (a read-only data dir with no lock file): such a hub cannot write either, and
        starts degraded (docs/persistence.md). ``key`` names the setting and where it came from."""
        path = data_dir / LOCK_FILE
        try:
            lock = path.open("a+", encoding="utf-8")  # not "w": the holder's pid stays readable until we hold it
        except OSError:
            try:
                lock = path.open(encoding="utf-8")
            except OSError:
                return None
        if (holder := _hold(lock)) is not None:
            raise _in_use(key, data_dir, holder)
        return cls(data_dir, lock)

    def take_again(self) -> str | None:
        """The lock taken again on a new lock file where the held one is gone (the data dir deleted under the
        running hub, the database since written again there): else a second hub could start on the same data
        dir. The file's name when taken again; None when the held one is still there, or it cannot be (another
        hub started there meanwhile: said, as both now write one database)."""
        path = self.data_dir / LOCK_FILE
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(self._file.fileno()).st_ino:
                return None
        lock = path.open("a+", encoding="utf-8")
        if (holder := _hold(lock)) is not None:
            log.error(
                "the data dir %s was deleted under this hub and another hub (pid %s) started on it meanwhile: both "
                "write its database; stop one of them",
                self.data_dir,
                holder,
            )
            return None
        self._file.close()
        self._file = lock
        return LOCK_FILE

    def release(self) -> None:
        self._file.close()


def _hold(lock: IO[str]) -> str | None:
    """Take the flock on an opened lock file and write this process's pid into it; closed and the holder's pid
    (or "unknown") when another process holds it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(lock)
        lock.close()
        return holder
    try:
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
    except OSError:
        pass  # opened read-only: the lock holds all the same, only the pid is not shown
    return None


def _holder(lock: IO[str]) -> str:
    """The pid the holder of a lock file wrote in it ("unknown" when it wrote none)."""
    lock.seek(0)
    return lock.read(20).strip() or "unknown"


def _in_use(key: str, data_dir: Path, holder: str) -> ConfigError:
    return ConfigError(
        f"{key}: {data_dir} is in use by another running hub (pid {holder}); each hub needs its own data_dir"
    )


def running_hub_on(data_dir: Path) -> str | None:
    """The pid of the running hub that holds ``data_dir``'s lock (:class:`DataDirLock`), or None when none does;
    taken and let go at once when free, and nothing created."""
    try:
        lock = (data_dir / LOCK_FILE).open(encoding="utf-8")
    except OSError:  # no lock file: no hub has run there, or none can (it could not create one)
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock)
        return None  # closing the file lets the lock go


def _check_data_dir(key: str, data_dir: Path, *, create: bool) -> None:
    try:
        if data_dir.exists() and not data_dir.is_dir():
            raise ConfigError(f"{key}: {data_dir} is a file, not a directory")
        if create:
            data_dir.mkdir(parents=True, exist_ok=True)
        elif not data_dir.exists():
            _check_creatable(key, data_dir)
    except OSError as exc:  # a name too long, a parent that cannot be searched
        raise ConfigError(f"{key}: cannot create {data_dir} ({exc.strerror})") from None


def _check_schema(key: str, database: Path) -> None:
    """The database is of a schema this build knows: a newer build's (a rollback after an upgrade) stops the
    start as a refused setting does, in one line, rather than once the hub has begun (exit status 1, which a
    unit restarting on failure repeats for ever)."""
    known = len(MIGRATIONS)
    if (version := stored_schema_version(database)) is not None and version > known:
        raise ConfigError(
            f"{key}: {database} holds database schema {version}, newer than this hub knows ({known}): a newer "
            "build migrated it; run that build, or this one on the copy taken before upgrading "
            "(docs/deployment.md, Upgrading)"
        )


def _check_creatable(key: str, directory: Path) -> None:
    """``directory``, which does not exist, could be created by this process: its nearest existing
    ancestor is a directory it may write in."""
    ancestor = next(parent for parent in directory.absolute().parents if parent.exists())
    if not ancestor.is_dir():
        raise ConfigError(f"{key}: cannot create {directory} ({ancestor} is a file)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot create {directory} ({ancestor} is not writable)")


def _check_own_address(key: str, address: str) -> None:
    """``address`` is one of this machine's: mDNS runs on the interface that has it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as exc:
            raise ConfigError(f"{key}: {address} is not an address of this machine ({exc.strerror})") from None
    # Linux also binds a multicast, broadcast or the unspecified address, on which no interface can be chosen
    if address not in {ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips}:
        raise ConfigError(
            f"{key}: {address} is not an address of this machine's interfaces (a multicast, broadcast or "
            "unspecified address names none)"
        )


def _check_listen(keys: tuple[str, str], host: str, port: int, in_use_allowed: bool = False) -> None:
    """``host`` resolves, and ``port`` (unless 0, any free one) can be bound on each of its addresses."""
    host_key, port_key = keys
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(
            f"{host_key}: {preview(host)} does not resolve to an address of this machine ({exc})"
        ) from None
    if port == 0:
        return
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
            try:
                probe.bind(address)
            except OSError as exc:
                shown = f"[{address[0]}]:{port}" if family == socket.AF_INET6 else f"{address[0]}:{port}"
                if exc.errno == errno.EADDRINUSE:
                    if in_use_allowed:
                        continue
                    raise ConfigError(f"{port_key}: {shown} is already in use") from None
                raise ConfigError(f"{host_key}: cannot listen on {shown} ({exc.strerror})") from None
