"""The ``wmhub`` command: run the hub, list plugins and devices, run discovery."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, NoReturn

from hub import __version__
from hub.auth import stored_token
from hub.config import DEFAULT_DATA_DIR, ConfigError, HubConfig, load_config
from hub.exit_codes import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED
from hub.lag import place_of, where_held
from hub.logs import JsonFormatter, set_levels, setup_logging
from hub.plugins import PluginHost, installed_plugin_names, plugins_not_installed
from hub.redact import redact
from hub.text import small_number

if TYPE_CHECKING:
    from hub.app import Hub

GC_YOUNG_THRESHOLD = 50_000
# From the first stop signal to the process's exit: past it, the hub exits anyway (status 1), naming what it was
# still stopping. Below the TimeoutStopSec of docs/deployment.md's unit (20 s; systemd's default is 90 s), after
# which systemd's SIGKILL would end it without a word.
STOP_DEADLINE_S = 15.0


def _http_address(value: str) -> dict[str, Any]:
    host, sep, port_text = value.rpartition(":")
    port = small_number(port_text, digits=5)
    if not sep or port is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address as URLs write it: [::1]:8058
        host = host[1:-1]
    # what no host name or address holds: refused here, before `devices` builds a URL of it or `run` asks DNS
    if any(char in "[]/@#?" or char.isspace() or not char.isprintable() for char in host):
        raise argparse.ArgumentTypeError(f"{value!r}: {host!r} is no host name or address")
    return {"host": host or "127.0.0.1", "port": port}


def _path(value: str) -> Path:
    if not value.strip():  # Path("") is the current directory: an unset variable in a script, not a choice
        raise argparse.ArgumentTypeError("an empty path")
    return Path(value)


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None


DISCOVER_SECONDS = (1.0, 86_400.0)


def _seconds(value: str) -> float:
    low, high = DISCOVER_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not low <= seconds <= high:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds from {low:g} to {high:g}")
    return seconds


class _OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line on stderr (and exit status 2), not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]  # typeshed's overloads; this keeps the one signature used
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """A word a command does not take is refused by that command (``wmhub plugins: unrecognized
        arguments: --bogus (see wmhub plugins --help)``), whose help lists what it does take; argparse
        would leave it to ``wmhub`` itself, whose help does not."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _versions() -> str:
    """The core's version and each installed plugin distribution's (read from metadata, nothing imported)."""
    from importlib.metadata import entry_points

    plugins = sorted({f"{ep.dist.name} {ep.dist.version}" for ep in entry_points(group="wmhub") if ep.dist})
    return "\n".join([f"wmhub {__version__}", *plugins])


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="wmhub",
        description="Wireless microphone hub: devices -> MQTT and a board.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version one distribution a line
    )
    parser.add_argument("--version", action="version", version=_versions())
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the hub")
    run.add_argument("--config", type=_path, help="TOML configuration file")
    run.add_argument("--device", action="append", default=[], metavar="URL", help="add a device (repeatable)")
    run.add_argument("--demo", action="store_true", help="start simulated devices on loopback and connect to them")
    run.add_argument(
        "--mqtt", help="embedded | off | mqtt://[user:pass@]host:port | mqtts://...; cluster nodes comma-separated"
    )
    run.add_argument("--http", type=_http_address, metavar="HOST:PORT", help="status board and REST API address")
    run.add_argument(
        "--data-dir", type=_path, help=f"where the database and API token live (default {DEFAULT_DATA_DIR})"
    )
    run.add_argument("--hub-id", help="this hub's id on MQTT (letters, digits, - and _)")
    run.add_argument(
        "--check",
        action="store_true",
        help="check the configuration, its files, addresses and device URLs, then exit: 0 if the hub could start "
        "with it (ports a running hub holds count as fine), 2 with the first problem",
    )

    fleet = commands.add_parser(
        "fleet", help="one board and read API for every hub on the broker, from their MQTT topics alone"
    )
    fleet.add_argument("--config", type=_path, help="TOML configuration file (the [mqtt] and [http] tables)")
    fleet.add_argument("--mqtt", help="the hubs' broker: mqtt://host:port (cluster nodes comma-separated)")
    fleet.add_argument("--http", type=_http_address, metavar="HOST:PORT", help="board and API address")
    fleet.add_argument(
        "--data-dir", type=_path, help=f"where the fleet board's API token lives (default {DEFAULT_DATA_DIR})"
    )
    fleet.add_argument("--hub-id", help="this board's id (its MQTT client id is <id>-fleet)")

    plugins = commands.add_parser("plugins", help="list installed plugins, their versions, hooks and errors")
    plugins.add_argument("--json", action="store_true", help="print the list as JSON")

    devices = commands.add_parser("devices", help="list the devices of a running hub")
    devices.add_argument("--json", action="store_true", help="print the list as JSON")
    devices.add_argument(
        "--config",
        type=_path,
        help="the hub's TOML configuration file: its [http] address and API token (http.token, or the token "
        "file in its data_dir)",
    )
    devices.add_argument(
        "--http",
        type=_http_address,
        metavar="HOST:PORT",
        help="the hub's address (default: the configuration's [http], else 127.0.0.1:8058)",
    )

    discover = commands.add_parser("discover", help="look for devices on the network and print what was found")
    discover.add_argument("--seconds", type=_seconds, default=10.0, help="how long to look (1 to 86400, default 10)")
    discover.add_argument("--json", action="store_true", help="print what was found as JSON")
    discover.add_argument(
        "--config", type=_path, help="TOML configuration file (its io_timeout_s and discovery.interfaces)"
    )
    discover.add_argument(
        "--interface",
        action="append",
        type=_address,
        metavar="ADDRESS",
        help="listen for devices (mDNS, the plugins' own announcements) only on this IPv4 address (repeatable)",
    )
    return parser


def _config(args: argparse.Namespace) -> HubConfig:
    # a flag given empty (--hub-id "") is given: its check refuses it, rather than the default taking over
    overrides: dict[str, Any] = {}
    if getattr(args, "demo", False):
        overrides["demo"] = True
    if getattr(args, "mqtt", None) is not None:
        overrides["mqtt"] = {"url": args.mqtt}
    if getattr(args, "http", None) is not None:
        overrides["http"] = args.http
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "hub_id", None) is not None:
        overrides["hub_id"] = args.hub_id
    if getattr(args, "interface", None):
        overrides["discovery"] = {"interfaces": args.interface}
    config = load_config(getattr(args, "config", None), overrides)
    if getattr(args, "device", None):
        # added to the devices of the file (or WMHUB_DEVICES), not in their place: a receiver added for one show
        # keeps the others on the board; one given in both is one device
        config.devices = [*dict.fromkeys([*config.devices, *args.device])]
    return config


def _raise_open_file_limit(configured: list[tuple[str, int]]) -> None:
    """Each receiver's connection holds descriptors: take the hard limit as the soft one, and say so when that is
    low, with how many receivers it leaves room for. ``configured`` are the configuration's receivers (more may be
    remembered or added), each as its scheme and the descriptors its driver spec declares a connection may hold."""
    import logging
    import resource

    from hub.descriptors import DESCRIPTOR_RESERVE, connections_fitting, device_connection_limit

    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if unlimited not in (soft, hard) and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            logging.getLogger("hub").warning("cannot raise the open-file limit from %d: %s", soft, exc)
    if soft == unlimited or soft >= 4096:
        return
    room = device_connection_limit(soft)
    kept = f"the hub keeps about {DESCRIPTOR_RESERVE} descriptors for its web server, MQTT and database"
    if room == 0:
        logging.getLogger("hub").warning(
            "open-file limit is %d: too low for any receiver connection (%s), so no receiver connects until it "
            "is raised with ulimit -n or systemd's LimitNOFILE=",
            soft,
            kept,
        )
        return
    # a receiver whose connection holds several descriptors (an event stream beside its requests) counts so
    several = sorted({(scheme, descriptors) for scheme, descriptors in configured if descriptors > 1})
    or_fewer = "".join(
        f", about {max(1, room // descriptors)} if they are {scheme}:// ({descriptors} descriptors each)"
        for scheme, descriptors in several
    )
    fit = connections_fitting(room, [descriptors for _, descriptors in configured])
    waiting = (
        f"; {len(configured)} are configured, about {fit} fit at once, the others wait their turn"
        if fit < len(configured)
        else ""
    )
    logging.getLogger("hub").warning(
        "open-file limit is %d: at most about %d receivers can be connected at once (%s)%s%s; raise it with "
        "ulimit -n or systemd's LimitNOFILE=",
        soft,
        room,
        kept,
        or_fewer,
        waiting,
    )


def _connections_configured(hub: Hub, urls: list[str]) -> list[tuple[str, int]]:
    """Each configured receiver's scheme and the descriptors its connection may hold (DriverSpec.descriptors)."""
    configured = []
    for url in urls:
        spec = hub.devices.driver_spec(url)
        if spec is not None:  # else a scheme no plugin handles, which the configuration's check refused
            configured.append((spec.scheme, spec.descriptors))
    return configured


def _run_forever(main: Coroutine[Any, Any, None]) -> None:
    """Run the hub on uvloop where it is installed (docs/adr/0009-uvloop.md), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        logging.getLogger("hub").info("uvloop is not installed: running on the standard asyncio event loop")
        asyncio.run(main)
        return
    uvloop.run(main)


def _tune_garbage_collector() -> None:
    """Keep the collector's pauses short at thousands of channels (docs/performance.md, "What was changed").

    Every meter sample allocates a little; with the default threshold of 700 the young generations were
    collected so often that objects living only tens of milliseconds (futures, coroutine frames, pending
    requests) were promoted and triggered full collections every few seconds, each stopping the hub for
    100-290 ms at 4,000 channels. A larger young generation lets them die young. What exists once the
    plugins are loaded (modules, classes, functions) lives as long as the process: frozen, a full
    collection no longer scans it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 10)


def _device_origin(args: argparse.Namespace, config: HubConfig) -> Callable[[str], str]:
    """Where a device URL was given: the flag, the environment variable, or the configuration file."""
    environment = {item.strip() for item in os.environ.get("WMHUB_DEVICES", "").split(",")}

    def origin(url: str) -> str:
        if url in getattr(args, "device", []):
            return "--device"
        if url in environment:
            return "WMHUB_DEVICES"
        return config.named("devices")  # the file's, --config's or WMHUB_CONFIG's

    return origin


def _plugin_log_levels(config: HubConfig, plugins: PluginHost) -> None:
    """Set the levels ``plugin_log_levels`` gives, each key a vendor the plugins register or a plugin's name
    (for every vendor that plugin registers): a vendor whose plugin is named otherwise could not be set, and a
    typo would leave a level unchanged without a word."""
    installed = installed_plugin_names()
    for key, level in config.plugin_log_levels.items():
        loggers = plugins.loggers_named(key)
        if not loggers and key not in installed:
            raise ConfigError(
                f"{config.named(f'plugin_log_levels.{key}')}: no installed plugin or vendor is named {key!r} "
                f"(the vendors: {', '.join(plugins.vendors()) or 'none'}; "
                f"the plugins: {', '.join(sorted(installed)) or 'none'})"
            )
        set_levels(dict.fromkeys(loggers, level))


def _run(config: HubConfig, args: argparse.Namespace, fleet: bool = False) -> int:
    from hub.compose import FleetHub, compose_hub
    from hub.preflight import DataDirLock, check_startup, move_demo_broker_off_a_taken_port

    setup_logging(config.log_level, config.plugin_log_levels)
    checking = bool(getattr(args, "check", False))
    try:
        # a typo there: the hub would run without that plugin's devices, silently; refused before the plugins
        # load, whose loading would log it as a second line
        if not fleet and (not_installed := plugins_not_installed()) is not None:
            raise ConfigError(f"WMHUB_LOAD_PLUGINS: {not_installed}")
        hub = FleetHub(config) if fleet else compose_hub(config)
        _plugin_log_levels(config, hub.plugins)
        taken = config.mqtt.embedded_port
        if (moved_to := move_demo_broker_off_a_taken_port(config)) is not None:
            logging.getLogger("hub").info(
                "demo: 127.0.0.1:%d is taken (an MQTT broker already runs there?): the embedded broker listens on "
                "127.0.0.1:%d instead; point MQTT clients there (mosquitto_sub -h 127.0.0.1 -p %d -t 'wmhub/#' -v)",
                taken,
                moved_to,
                moved_to,
            )
        # the fleet board keeps only its token in the data dir: it may share a hub's
        check_startup(
            config, hub.devices.resolve, _device_origin(args, config), only_checking=checking, database=not fleet
        )
        if checking:
            # a check changes nothing: a data dir still to be created is only said
            created = "" if config.data_dir.is_dir() else f"; data_dir {config.data_dir} will be created"
            summary = f"{len(config.devices)} device(s), MQTT {redact(str(config.mqtt.url))}{created}"
            print(f"wmhub: configuration ok ({summary})")
            return 0
        data_dir_lock = None if fleet else DataDirLock.take(config.data_dir, config.named("data_dir"))
        if data_dir_lock is not None:
            hub.files_beside_database.append(data_dir_lock.take_again)
    except ConfigError as exc:
        print(f"wmhub: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _raise_open_file_limit(_connections_configured(hub, config.devices))
    _tune_garbage_collector()
    guard = _StopGuard(hub)
    try:
        _run_forever(_until_signalled(hub, guard))
    except Exception as exc:  # the hub has stopped everything it started: say why in one line
        logging.getLogger("hub").error("the hub stopped: %s", redact(str(exc)) or type(exc).__name__)
        return EXIT_FAILED
    finally:
        guard.finished.set()
        if data_dir_lock is not None:
            data_dir_lock.release()
    # the database's close logged what it lost: the unit shows failed, not a clean stop
    return EXIT_FAILED if hub.lost_at_stop is not None else 0


class _StopGuard:
    """Bounds the hub's stop from the first stop signal, or from the stop's beginning when the hub stops on its
    own: a second SIGINT or SIGTERM ends the process at once, and so does the stop outlasting STOP_DEADLINE_S;
    either exits 1 with one log line naming what was still stopping, or where plugin code holds the event
    loop so that the stop cannot begin. A repeated SIGHUP changes nothing (a closing terminal sends it twice)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.finished = threading.Event()  # the event loop has closed: nothing of the hub's is left to bound
        self._deadline: threading.Thread | None = None

    def heard(self, signum: int, frame: FrameType | None) -> None:
        """A stop signal, heard in Python's handler before the event loop (held, it may never hear it); ``frame``
        is where the handler interrupted the loop's thread."""
        if self._deadline is None:
            self._start_deadline()
        elif signum != signal.SIGHUP:
            self._signalled_again(signum, frame)

    def begin(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if loop.remove_signal_handler(signum):  # not one the hub left alone (SIGHUP under nohup)
                # a handler of Python's own, not the loop's: it runs even while plugin code blocks the loop
                signal.signal(signum, signal.SIG_IGN if signum == signal.SIGHUP else self._signalled_again)
        if self._deadline is None:
            self._start_deadline()

    def _start_deadline(self) -> None:
        # a thread of its own: it counts while plugin code blocks the loop, and up to the loop's very end (asyncio
        # waits for its executor's threads then, without a limit on Python 3.11)
        self._deadline = threading.Thread(target=self._watch, name="wmhub stop deadline", daemon=True)
        self._deadline.start()

    def _signalled_again(self, signum: int, frame: FrameType | None) -> None:
        # a handler runs on the loop's own thread: its stack there is the handler's, the loop's place is ``frame``
        self._exit(f"{signal.Signals(signum).name} while stopping", frame)

    def _watch(self) -> None:
        if not self.finished.wait(STOP_DEADLINE_S):
            self._exit(f"the stop did not finish within {STOP_DEADLINE_S:g} s")

    def _exit(self, why: str, interrupted: FrameType | None = None) -> None:
        """End the process; ``interrupted``: where a signal handler calling this interrupted the loop's thread."""
        step = self._hub.still_stopping()
        if step is None and not self._hub.stopped.is_set():  # the event loop that would begin the stop is held
            held = self._hub.loop_monitor.held() or (
                place_of(interrupted) if interrupted is not None else where_held(threading.main_thread().ident or 0)
            )
            step = f"nothing: the stop never began, the event loop's thread {held}"
        elif step is None:  # the hub has stopped: what is left is the event loop's own end
            main, this = threading.main_thread(), threading.current_thread()
            others = [thread.name for thread in threading.enumerate() if thread not in (main, this)]
            step = f"the event loop's end (other threads: {', '.join(others) or 'none'})"
        _last_words(logging.ERROR, "%s: exiting now, the stop unfinished (still stopping %s)", why, step)
        os._exit(EXIT_FAILED)


# How long the last line before os._exit may take to write: stderr may be a pipe no one reads any more.
LAST_WORDS_S: Final = 1.0


def _last_words(level: int, message: str, *args: object) -> None:
    """Log a line formatted as the log handler would, written to stderr by a thread of its own and given
    LAST_WORDS_S: not through the handler, whose lock the thread stuck writing to a full stderr pipe holds
    (a plugin logging as the loop stands still), so the bound it reports still ends the process."""
    record = logging.getLogger("hub").makeRecord("hub", level, __file__, 0, message, args, None)
    handler = next(iter(logging.getLogger().handlers), None)
    formatter = handler.formatter if handler is not None and handler.formatter is not None else JsonFormatter()
    line = (formatter.format(record) + "\n").encode(errors="replace")

    def write() -> None:
        with contextlib.suppress(OSError):
            written = 0
            while written < len(line):
                written += os.write(2, line[written:])

    writer = threading.Thread(target=write, name="wmhub last words", daemon=True)
    writer.start()
    writer.join(LAST_WORDS_S)


async def _until_signalled(hub: Hub, guard: _StopGuard) -> None:
    """Run the hub; then leave at once if plugin code it gave up on is still running: asyncio's exit would
    cancel it again and wait for it, for ever if it ignores cancellation (hub.plugins.call_bounded)."""
    failed = True
    try:
        await hub.run_until_signalled(stopping=guard.begin, heard=guard.heard)
        failed = False
    finally:
        _ignore_stop_signals()
        if hub.plugins.strays:
            logging.getLogger("hub").error(
                "%d plugin call(s) given up on still running (they ignore cancellation): exiting without them",
                len(hub.plugins.strays),
            )
            logging.shutdown()
            sys.stdout.flush()
            os._exit(EXIT_FAILED if failed or hub.lost_at_stop is not None else 0)


def _ignore_stop_signals() -> None:
    """The hub has stopped: a further stop signal (a closing terminal sends SIGHUP twice, a second Ctrl-C)
    changes nothing. Left to the loop, which puts the default action back as it closes, one arriving before
    the process ends killed it, exit status -1 for a stop that had finished cleanly."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


def _plugins(as_json: bool) -> int:
    host = PluginHost()
    host.load_entry_points()
    host.check_registrations()
    listing = []
    for record in host.rows():
        # what each plugin drives, in its own words (a family it has not verified against hardware says so
        # there); an entry point not loaded drives nothing, whatever the plugin of its name does
        drivers = [spec for spec, owner in host.drivers().values() if host.records.get(owner) is record]
        listing.append(
            record.as_dict() | {"drivers": [{"scheme": d.scheme, "description": d.description} for d in drivers]}
        )
    # a plugin that failed, none installed or one asked for and not installed (the log says so) is an
    # installation to mend: scripts see it
    none_installed = not listing and os.environ.get("WMHUB_LOAD_PLUGINS") is None
    failed = none_installed or host.not_installed or any(plugin["error"] for plugin in listing)
    status = 1 if failed else 0
    if as_json:
        print(json.dumps(listing, indent=2))
        return status
    for plugin in listing:
        hooks = f"ERROR {plugin['error']}" if plugin["error"] else ", ".join(plugin["hooks"])
        # one distribution may hold several plugins (entry points): each line names its own
        entry = f" ({plugin['name']})" if plugin["distribution"] not in (None, plugin["name"]) else ""
        shown = f"{plugin['distribution'] or plugin['name']} {plugin['version'] or ''}".rstrip()
        print(f"{shown}{entry}: {hooks}")
        for driver in plugin["drivers"]:
            print(f"    {driver['scheme']}://  {driver['description']}")
    return status


# the whole listing, every page: a hub (or whatever holds its port) that answers a byte at a time is given up on
DEVICES_DEADLINE_S = 10.0


class _HubRefused(Exception):
    """The hub answered with an HTTP error (its status and reason)."""

    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


async def _fetch_devices(base: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    import aiohttp

    devices: list[dict[str, Any]] = []
    # trust_env off: the hub's address is asked directly, never through http_proxy, which would get the token
    async with aiohttp.ClientSession(headers=headers, trust_env=False) as session, asyncio.timeout(DEVICES_DEADLINE_S):
        while True:
            async with session.get(f"{base}?limit=1000&offset={len(devices)}", allow_redirects=False) as response:
                if response.status != 200:
                    raise _HubRefused(response.status, response.reason)
                page = json.loads(await response.read())
            devices += page["items"]
            if not page["items"] or len(devices) >= page["total"]:
                return devices


def _devices(config: HubConfig, as_json: bool) -> int:
    import aiohttp

    host = f"[{config.http.host}]" if ":" in config.http.host else config.http.host
    base = f"http://{host}:{config.http.port}/api/v1/devices"
    token = config.http.token or _stored_token(config.data_dir)  # a hub with open_reads off wants it
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        devices = asyncio.run(_fetch_devices(base, headers))
    except _HubRefused as exc:
        # the token is the hub's http.token or the one in its data_dir: this command finds either through
        # the hub's configuration
        hint = (
            " (it wants its API token: give the hub's configuration with --config, or set WMHUB_HTTP__TOKEN)"
            if exc.status == 401
            else ""
        )
        print(f"wmhub devices: the hub at {base} answered {exc}{hint}", file=sys.stderr)
        return 1
    except aiohttp.ClientResponseError as exc:  # no HTTP at all; aiohttp's message spans lines
        print(
            f"wmhub devices: what answers at {base} is not a wmhub API ({exc.message.splitlines()[0]})", file=sys.stderr
        )
        return 1
    except TimeoutError:
        print(
            f"wmhub devices: no hub answering at {base} (no whole answer within {DEVICES_DEADLINE_S:g} s)",
            file=sys.stderr,
        )
        return 1
    except aiohttp.ClientError as exc:
        print(f"wmhub devices: no hub answering at {base} ({exc or type(exc).__name__})", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError) as exc:  # JSON that is no device list: not this hub's API
        print(f"wmhub devices: what answers at {base} is not a wmhub API ({exc!r})", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(devices, indent=2))
        return 0
    # columns as wide as their longest entry (a model name may be long: "SLXD4D-G58 dual")
    id_width = max((len(str(device["id"])) for device in devices), default=0)
    model_width = max((len(str(device.get("model") or "?")) for device in devices), default=0)
    for device in devices:
        state = "online" if device.get("online") else "offline"
        model = device.get("model") or "?"
        print(f"{device['id']:<{id_width}}  {model:<{model_width}}  {device['host']}:{device['port']}  {state}")
        for channel in device.get("channels", []):
            print(f"    {channel['index']}: {channel.get('name') or ''}")
    return 0


def _discover(config: HubConfig, seconds: float, as_json: bool, from_flag: bool = False) -> int:
    from hub.discovery import Discovery
    from hub.drivers import DriverSettings
    from hub.preflight import check_discovery_interfaces

    try:
        check_discovery_interfaces(config, "--interface" if from_flag else None)
    except ConfigError as exc:
        print(f"wmhub discover: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def scan() -> list[dict[str, Any]]:
        host = PluginHost()
        host.load_entry_points()
        discovery = Discovery(host, DriverSettings(io_timeout_s=config.io_timeout_s), config.discovery.interfaces)
        await discovery.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            await discovery.stop()
        return [vars(candidate) for candidate in discovery.candidates.values()]

    try:
        found = asyncio.run(scan())
    except OSError as exc:  # e.g. no multicast on the interface: one line, as for a setting refused
        print(f"wmhub discover: cannot listen for mDNS: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(json.dumps(found, indent=2))
    elif not found:
        print("no devices found")
    for candidate in [] if as_json else found:
        print(f"{candidate['url']:<40} {candidate['vendor']} {candidate['model'] or ''} {candidate['name'] or ''}")
    return 0


def _stored_token(data_dir: Path) -> str | None:
    try:
        return stored_token(data_dir)
    except OSError:  # an unreadable token file: ask without one and let the hub's answer say so
        return None


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the hub took over SIGINT (while it imports and starts)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "plugins":
        return _plugins(args.json)
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"wmhub: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "fleet" and not config.mqtt.url.startswith("mqtt"):
        print("wmhub fleet: needs the hubs' broker: --mqtt mqtt://host:port (or mqtt.url)", file=sys.stderr)
        return EXIT_CONFIG
    if args.command in ("run", "fleet"):
        return _run(config, args, fleet=args.command == "fleet")
    if args.command == "devices":
        return _devices(config, args.json)
    return _discover(config, args.seconds, args.json, from_flag=bool(args.interface))


if __name__ == "__main__":
    sys.exit(main())
