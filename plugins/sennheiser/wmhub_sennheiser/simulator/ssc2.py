"""A Spectera-style SSCv2 device on loopback: HTTPS with a self-signed certificate, Basic auth, real SSE.

Many instances run in one process (each on its own OS-chosen port). State moves over time (battery,
RF, audio) on a ticker, or one step per :meth:`Ssc2Simulator.tick` when ``tick_s`` is 0, so tests can
compare exact values. Faults: :meth:`drop_streams`, :meth:`set_silent`, :meth:`reboot`.

Run one from a shell: ``python -m wmhub_sennheiser.simulator.ssc2 --password ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import random
import ssl
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wmhub_sennheiser.ssc2 import (
    AUDIO_OUTPUTS_PATH,
    IDENTITY_PATH,
    METERING_PATH,
    MOBILES_PATH,
    RF_CHANNELS_PATH,
    SITE_PATH,
    STATE_PATH,
    SUBSCRIPTIONS_PATH,
    encode_sse,
    normalise_path,
    path_covers,
)

UNAUTHENTICATED_PATHS = frozenset({"/api/ssc/version", IDENTITY_PATH, "/api/device/identification"})
ANTENNAS = ("a", "b", "c", "d")  # Spectera's antenna ports (src/types.ts AntennaPortId)
# The user Spectera's own client logs in as (companion-module-sennheiser-spectera src/api.ts).
SPECTERA_USER = "controlSennheiser"
# What this simulated base station accepts. Its own limits, not the driver's: a driver that checks
# less than the device refuses shows up as a refusal in the tests.
TUNING_KHZ = range(470_000, 694_001, 1000)  # whole MHz: src/types.ts RfChannel.frequency "Step: 1000"
NAME_LENGTHS = {"mobile": 16, "device": 32}
# The characters of a pack's name (companion-module-sennheiser-spectera src/utils.ts MOBILE_DEVICE_NAME_ALLOWED)
MOBILE_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+=*/;<>#|,. ")
OUTPUTS = 32  # audio outputs, metered per interface in arrays of this length
CLIP_DBFS = -1.0  # the peak a correct client shows as clipping (the plugin's documented threshold)
SILENCE_DBFS = -120.0


def _name_refusal(name: object, kind: str) -> str | None:
    longest = NAME_LENGTHS[kind]
    if not isinstance(name, str) or not name.strip() or len(name) > longest or not name.isprintable():
        return f"{kind} names are 1..{longest} printable characters"
    if kind == "mobile" and not set(name) <= MOBILE_NAME_CHARACTERS:
        return "a mobile device name has letters, digits, space and - + = * / ; < > # | , . only"
    return None


@dataclass
class SelfSignedCertificate:
    cert_pem: bytes
    key_pem: bytes
    sha256: str  # hex of the DER certificate's SHA-256, the value a client pins

    @classmethod
    def generate(cls, host: str = "127.0.0.1") -> SelfSignedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        der = certificate.public_bytes(serialization.Encoding.DER)
        return cls(
            cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            sha256=hashlib.sha256(der).hexdigest(),
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # load_cert_chain reads files only
        with tempfile.TemporaryDirectory() as folder:
            cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            with open(cert_file, "wb") as out:
                out.write(self.cert_pem)
            with open(key_file, "wb") as out:
                out.write(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context


@dataclass
class SimMobile:
    """One paired mic or bodypack, as the base station reports it."""

    mt_uid: int
    name: str
    type: str = "SKM"
    on: bool = True
    battery_percent: int = 100
    lqi: int = 4  # link quality 0..4, as Spectera reports it
    rssi: float = -60.0
    antenna: str = "a"  # a port of ANTENNAS, or "NotAvailable"
    rf_channel_id: int = 0
    rms: float = -30.0
    identify: bool = False
    sleeping: bool = False  # on, but asleep: Spectera reports state "Sleeping"
    battery_read: bool = True  # False: no battery reading, which Spectera reports as -1 (shown "Off" by its client)

    @property
    def audio_link(self) -> int:
        """The mic audio link carrying this pack, routed to the output of the same number."""
        return self.mt_uid % OUTPUTS

    @property
    def peak(self) -> float:
        return min(0.0, self.rms + 12)

    @property
    def on_air(self) -> bool:
        return self.on and not self.sleeping

    def resource(self) -> dict[str, Any]:
        return {
            "mtUid": self.mt_uid,
            "type": self.type,
            "name": self.name,
            "serial": f"{7000000 + self.mt_uid}",
            # src/types.ts MtState: Connected, Disconnected, Syncing, Sleeping, Updating
            "state": "Sleeping" if self.on and self.sleeping else "Connected" if self.on else "Disconnected",
            # a switched-off transmitter keeps reporting its last values; the client must ignore them
            "batteryFillLevel": self.battery_percent if self.battery_read else -1,
            "batteryRuntime": self.runtime_min if self.battery_read else -1,
            "batteryLow": self.battery_low,
            "micLqi": self.lqi,
            "iemLqi": 0,
            "rssi": self.rssi,
            "dominantAntenna": self.antenna,
            "interference": {"severity": "none"},
            "rfChannelId": self.rf_channel_id,
            "micAudiolinkId": self.audio_link,
            "identify": self.identify,
            "sleep": self.sleeping,
        }

    @property
    def runtime_min(self) -> int:
        return self.battery_percent * 4

    @property
    def battery_low(self) -> bool:
        return self.battery_read and self.battery_percent < 20


@dataclass(frozen=True)
class Unframed:
    """Bytes a stream sends outside its chunked framing (a fault: a malformed chunk-size line, say)."""

    data: bytes


@dataclass
class SimSession:
    uuid: str
    paths: list[str] = field(default_factory=list)
    outbox: asyncio.Queue[bytes | Unframed | None] = field(default_factory=asyncio.Queue)

    def covers(self, resource: str) -> bool:
        return any(path_covers(path, resource) for path in self.paths)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Ssc2Simulator:
    """An SSCv2 base station with ``mobiles`` paired transmitters spread over two RF channels."""

    def __init__(
        self,
        *,
        password: str = "Stage-Pass-2026",
        user: str = SPECTERA_USER,
        mobiles: int = 4,
        tick_s: float = 0.2,
        serial: str = "1023456789",
        product: str = "Spectera Base Station",
        device_name: str = "Spectera Rack",
        seed: int = 1,
        tx_churn: float = 0.0,
        serve_schema: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.user, self.password, self.tick_s, self.host = user, password, tick_s, host
        self.serial, self.product, self.device_name, self.location = serial, product, device_name, "FOH"
        self.mobiles = [SimMobile(mt_uid=10 + n, name=f"Mic {n + 1}", rf_channel_id=n % 2) for n in range(mobiles)]
        self.placeholders = 0  # paired packs still syncing: listed with serial 0000000000, no channel
        self.metering_updates = 0
        self.rf_khz = {0: 474_000, 1: 482_000}
        self.rf_bandwidth_khz = {0: 8000, 1: 8000}  # src/types.ts BandwidthMode: 6000, 8000, 10000
        self.warnings: list[str] = []
        self.sessions: dict[str, SimSession] = {}
        self.requests = 0  # every HTTP request received, for tests counting retries
        self.refused = 0  # requests answered 401
        self.writes: list[tuple[str, Any]] = []  # accepted PUT bodies, in order
        self.deletes: list[str] = []  # session ids clients asked to end, in order
        self.busy_deletes = 0  # fault: this many coming session DELETEs are answered 503
        self.hold_open_event = False  # fault: a new stream sends its headers, then nothing
        self.session_prefix = ""  # fault: session ids that start with this (escape sequences, say)
        self.open_event_data: str | None = None  # fault: the open event's data line as given, not the session's
        # fault: a request for one of these paths gets this answer instead (a redirect, a huge body)
        self.answers: dict[str, Callable[[], web.StreamResponse]] = {}
        self.certificate = SelfSignedCertificate.generate(host)
        self.port = 0
        self._random = random.Random(seed)  # nosec B311 # simulated values, seeded for reproducible tests
        self.tx_churn = tx_churn  # chance per tick that one transmitter is switched off or on
        self.serve_schema = serve_schema  # False: a device without GET /api/ssc/schema
        self._awake = asyncio.Event()
        self._awake.set()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None

    # --- lifecycle

    @property
    def fingerprint_sha256(self) -> str:
        return self.certificate.sha256

    def url(self, *, pin: bool = True, password: str | None = None, **options: str) -> str:
        """A ``sennheiser-ssc2://`` URL for this simulator (pinned to its certificate unless ``pin=False``).

        The URL names the user only when it is not Spectera's own: the driver picks that one by product.
        """
        query = {"password": self.password if password is None else password, **options}
        if self.user != SPECTERA_USER and "user" not in options:
            query["user"] = self.user
        if pin:
            query["fingerprint"] = self.fingerprint_sha256
        return f"sennheiser-ssc2://{self.host}:{self.port}?{urlencode(query)}"

    async def start(self) -> int:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(SUBSCRIPTIONS_PATH, self._open_stream)
        app.router.add_route("*", SUBSCRIPTIONS_PATH + "/{uuid}", self._session)
        app.router.add_put(SUBSCRIPTIONS_PATH + "/{uuid}/{action:add|remove}", self._session_edit)
        app.router.add_get("/api/ssc/version", self._version)
        app.router.add_get("/api/ssc/schema", self._schema)
        self._add_writes(app)
        app.router.add_get("/api/{path:.*}", self._get_resource)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.certificate.server_context())
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self.tick_s > 0:
            self._ticker = asyncio.create_task(self._tick_forever())
        return self.port

    def _add_writes(self, app: web.Application) -> None:
        """The product's writable resources."""
        app.router.add_put(SITE_PATH, self._put_site)
        app.router.add_put(MOBILES_PATH + "/{mt_uid}", self._put_mobile)
        app.router.add_put(RF_CHANNELS_PATH + "/{rf_id}", self._put_rf_channel)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        self._awake.set()
        self._end_sessions(forget=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Ssc2Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- state, in hub-model terms (what a correct client must show)

    def expected_device(self) -> dict[str, Any]:
        return {"id": f"sennheiser-{self.serial}", "name": self.device_name, "model": self.product}

    def expected_channels(self) -> dict[int, dict[str, Any]]:
        channels = {}
        for index, mobile in enumerate(sorted(self.mobiles, key=lambda m: m.mt_uid), start=1):
            on = mobile.on_air
            channels[index] = {
                "name": mobile.name,
                "frequency_mhz": self.rf_khz[mobile.rf_channel_id] / 1000,
                "rf_bandwidth_khz": float(self.rf_bandwidth_khz[mobile.rf_channel_id]),
                "tx_present": on,
                "tx_model": mobile.type,
                "tx_id": f"{7000000 + mobile.mt_uid}",
                "battery_percent": mobile.battery_percent if on and mobile.battery_read else None,
                "battery_runtime_min": mobile.runtime_min if on and mobile.battery_read else None,
                "rf_quality_percent": mobile.lqi * 25 if on else None,
                "rf_dbm": mobile.rssi if on else None,
                "antenna": mobile.antenna.upper() if on and mobile.antenna != "NotAvailable" else None,
                "audio_dbfs": mobile.rms if on else None,
                "audio_peak": mobile.peak >= CLIP_DBFS if on else None,
                "warnings": self.warnings + (["battery low"] if mobile.battery_low else []),
            }
        return channels

    # --- changes (each one is pushed to the subscribed sessions)

    def tick(self) -> None:
        """One step of a live show: meters move, batteries drain, antennas switch, transmitters come and go."""
        if self.mobiles and self._random.random() < self.tx_churn:
            churned = self._random.choice(self.mobiles)
            churned.on = not churned.on
        for mobile in self.mobiles:
            if not mobile.on_air:
                continue
            mobile.lqi = self._random.randint(2, 4)
            mobile.rssi = self._random.randint(-150, -90) / 2
            mobile.rms = self._random.randint(-90, -16) / 2
            if self._random.random() < 0.2:
                mobile.antenna = self._random.choice(ANTENNAS)
            if self._random.random() < 0.1:
                mobile.battery_percent = max(0, mobile.battery_percent - 1)
        self._publish([f"{MOBILES_PATH}/{mobile.mt_uid}" for mobile in self.mobiles] + [METERING_PATH])

    def set_transmitter(self, index: int, on: bool) -> None:
        """Switch the transmitter on channel ``index`` (1-based, in mtUid order) off or on."""
        mobile = sorted(self.mobiles, key=lambda m: m.mt_uid)[index - 1]
        mobile.on = on
        self._publish([f"{MOBILES_PATH}/{mobile.mt_uid}", METERING_PATH])

    def set_sleeping(self, index: int, sleeping: bool) -> None:
        """Put the pack on channel ``index`` (1-based, in mtUid order) to sleep, or wake it."""
        mobile = sorted(self.mobiles, key=lambda m: m.mt_uid)[index - 1]
        mobile.sleeping = sleeping
        self._publish([f"{MOBILES_PATH}/{mobile.mt_uid}", METERING_PATH])

    def set_readings(self, index: int, *, battery: bool = True, antenna: str = "a") -> None:
        """The pack on channel ``index`` (1-based, in mtUid order) with or without a battery reading, and its
        dominant antenna ("NotAvailable" for none)."""
        mobile = sorted(self.mobiles, key=lambda m: m.mt_uid)[index - 1]
        mobile.battery_read, mobile.antenna = battery, antenna
        self._publish([f"{MOBILES_PATH}/{mobile.mt_uid}"])

    def unpair(self, mt_uid: int) -> None:
        """Unpair a transmitter: it leaves the list, and streams get its resource as null (src/api.ts reads a
        null ``/api/mts/paired/all/{mtUid}`` as unpaired)."""
        self.mobiles = [mobile for mobile in self.mobiles if mobile.mt_uid != mt_uid]
        self._publish([f"{MOBILES_PATH}/{mt_uid}", METERING_PATH])

    def pair(self, mobile: SimMobile) -> None:
        self.mobiles.append(mobile)
        self._publish([f"{MOBILES_PATH}/{mobile.mt_uid}", METERING_PATH])

    def set_warnings(self, warnings: Iterable[str]) -> None:
        self.warnings = list(warnings)
        self._publish([STATE_PATH])

    # --- faults

    def drop_streams(self) -> None:
        """Cut every SSE stream; the sessions themselves survive, as after a network glitch."""
        self._end_sessions(forget=False)

    def push_to_streams(self, data: bytes | Unframed) -> None:
        """Send ``data`` on every open stream: event bytes as they are (a hostile event), or unframed bytes."""
        for session in self.sessions.values():
            session.outbox.put_nowait(data)

    def set_silent(self, silent: bool) -> None:
        """A hung device: requests and events wait until it wakes up."""
        if silent:
            self._awake.clear()
        else:
            self._awake.set()

    def reboot(self) -> None:
        """Every session and stream is gone; the state survives."""
        self._end_sessions(forget=True)

    def _end_sessions(self, *, forget: bool) -> None:
        for session in self.sessions.values():
            session.outbox.put_nowait(None)
        if forget:
            self.sessions.clear()

    # --- resources

    def _resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = {
            IDENTITY_PATH: {
                "product": self.product,
                "hardwareRevision": "1",
                "serial": self.serial,
                "vendor": "Sennheiser electronic GmbH & Co. KG",
            },
            SITE_PATH: {"deviceName": self.device_name, "location": self.location},
            STATE_PATH: {"state": "Normal", "warnings": list(self.warnings)},
            METERING_PATH: self._metering(),
            "/api/health/psu": {"psu1": "connected", "psu2": "connected"},
        }
        for output in range(OUTPUTS):
            resources[f"{AUDIO_OUTPUTS_PATH}/{output}"] = {"outputId": output, "micAudiolinkId": output}
        for n in range(self.placeholders):
            uid = 900 + n
            resources[f"{MOBILES_PATH}/{uid}"] = {"mtUid": uid, "type": "SKM", "name": "", "serial": "0000000000"}
        for rf_id, khz in self.rf_khz.items():
            resources[f"{RF_CHANNELS_PATH}/{rf_id}"] = {
                "rfChannelId": rf_id,
                "frequency": khz,
                "bandwidthMode": self.rf_bandwidth_khz[rf_id],
                "rfState": "RfActive",
            }
        for mobile in self.mobiles:
            resources[f"{MOBILES_PATH}/{mobile.mt_uid}"] = mobile.resource()
        return resources

    def _metering(self) -> dict[str, Any]:
        """Levels per audio interface and output (src/types.ts AudioLevels), silence where no pack is on air."""
        rms, peak = [SILENCE_DBFS] * OUTPUTS, [SILENCE_DBFS] * OUTPUTS
        for mobile in self.mobiles:
            if mobile.on_air:
                rms[mobile.audio_link], peak[mobile.audio_link] = mobile.rms, mobile.peak
        self.metering_updates += 1
        return {"aoIpOut": {"peak": peak, "rms": rms}, "updateCounter": self.metering_updates}

    def _read(self, path: str) -> Any:
        """A resource, or a collection as the list of its members; KeyError if there is neither."""
        resources = self._resources()
        if path in resources:
            return resources[path]
        members = [value for key, value in resources.items() if key.startswith(path + "/")]
        if path in (MOBILES_PATH, RF_CHANNELS_PATH, AUDIO_OUTPUTS_PATH):
            return members
        raise KeyError(path)

    def _publish(self, paths: Iterable[str]) -> None:
        resources = self._resources()
        for session in self.sessions.values():
            data = {path: resources.get(path) for path in paths if session.covers(path)}
            if data:
                session.outbox.put_nowait(encode_sse(data))

    def _send_current(self, session: SimSession, paths: Iterable[str]) -> None:
        """A fresh subscription gets the current value of everything it covers, as one event."""
        data = {
            path: value
            for path, value in self._resources().items()
            if any(path_covers(wanted, path) for wanted in paths)
        }
        if data:
            session.outbox.put_nowait(encode_sse(data))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self._awake.wait()
            self.tick()

    # --- HTTP

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        await self._awake.wait()
        if request.path not in UNAUTHENTICATED_PATHS and not self._authorised(request):
            self.refused += 1
            return self._error(401, "authentication required", {"WWW-Authenticate": 'Basic realm="SSC"'})
        answer = self.answers.get(request.path)
        return answer() if answer is not None else await handler(request)

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(user.encode(), self.user.encode()) and hmac.compare_digest(
            password.encode(), self.password.encode()
        )

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"error": status, "message": message}, status=status, headers=headers)

    async def _body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": 400, "message": "malformed JSON"}), content_type="application/json"
            ) from None

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"schema": "18.1", "protocol": "2.3"})

    async def _schema(self, request: web.Request) -> web.Response:
        if not self.serve_schema:
            return self._error(404, "no schema")
        paths: dict[str, dict[str, Any]] = {path: {"get": {}} for path in self._resources()}
        paths[MOBILES_PATH + "/{mtUid}"] = {"get": {}, "put": {}}
        paths[RF_CHANNELS_PATH + "/{rfChannelId}"] = {"get": {}, "put": {}}
        paths[SITE_PATH] = {"get": {}, "put": {}}
        document = {"openapi": "3.0.3", "info": {"title": self.product, "version": "18.1"}, "paths": paths}
        return web.Response(text=json.dumps(document), content_type="application/openapi+json")

    async def _get_resource(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self._read(normalise_path(request.path)))
        except KeyError:
            return self._error(422, f"no resource {request.path}")

    async def _open_stream(self, request: web.Request) -> web.StreamResponse:
        session = SimSession(uuid=self.session_prefix + str(uuid.uuid4()))
        self.sessions[session.uuid] = session
        location = f"{SUBSCRIPTIONS_PATH}/{session.uuid}"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Content-Location": quote(location),
            }
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            if self.hold_open_event:
                await session.outbox.get()  # until the stream is dropped
                return response
            if self.open_event_data is None:
                await response.write(encode_sse({"path": location, "sessionUUID": session.uuid}, event="open"))
            else:  # the session id then only in the Content-Location header
                await response.write(f"event: open\ndata: {self.open_event_data}\n\n".encode())
            while (chunk := await session.outbox.get()) is not None:
                await self._awake.wait()
                if isinstance(chunk, Unframed):
                    assert request.transport is not None  # the stream is open
                    request.transport.write(chunk.data)
                else:
                    await response.write(chunk)
            await response.write_eof()
        return response

    def _known_session(self, request: web.Request) -> SimSession:
        session = self.sessions.get(request.match_info["uuid"])
        if session is None:
            raise web.HTTPUnprocessableEntity(
                text=json.dumps({"error": 422, "message": "unknown subscription"}), content_type="application/json"
            )
        return session

    async def _session(self, request: web.Request) -> web.Response:
        session = self._known_session(request)
        if request.method == "GET":
            return web.json_response(session.paths)
        if request.method == "DELETE":
            self.deletes.append(session.uuid)
            if self.busy_deletes > 0:
                self.busy_deletes -= 1
                return self._error(503, "busy")
            del self.sessions[session.uuid]
            session.outbox.put_nowait(None)
            return web.Response(status=204)
        if request.method == "PUT":
            paths = await self._paths(request)
            session.paths = paths
            self._send_current(session, paths)
            return web.json_response(session.paths)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "DELETE"])

    async def _session_edit(self, request: web.Request) -> web.Response:
        session = self._known_session(request)
        paths = await self._paths(request)
        if request.match_info["action"] == "add":
            session.paths += [path for path in paths if path not in session.paths]
            self._send_current(session, paths)
        else:
            gone = {normalise_path(path) for path in paths}
            session.paths = [path for path in session.paths if normalise_path(path) not in gone]
        return web.json_response(session.paths)

    async def _paths(self, request: web.Request) -> list[str]:
        body = await self._body(request)
        if not isinstance(body, list) or not all(isinstance(path, str) for path in body):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": 400, "message": "expected an array of paths"}),
                content_type="application/json",
            )
        return body

    async def _put_site(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict) or not set(body) <= {"deviceName", "location"}:
            return self._error(400, "only deviceName and location can be written")
        if "deviceName" in body and (problem := _name_refusal(body["deviceName"], "device")):
            return self._error(400, problem)
        self.device_name = body.get("deviceName", self.device_name)
        self.location = str(body.get("location", self.location))
        self.writes.append((SITE_PATH, body))
        self._publish([SITE_PATH])
        return web.json_response(self._read(SITE_PATH))

    async def _put_mobile(self, request: web.Request) -> web.Response:
        mobile = next((m for m in self.mobiles if str(m.mt_uid) == request.match_info["mt_uid"]), None)
        if mobile is None:
            return self._error(422, "no such mobile device")
        body = await self._body(request)
        # mtUid and type may come along, as Spectera's own client sends them (src/api.ts setMobileDevice)
        if not isinstance(body, dict) or not set(body) <= {"name", "identify", "mtUid", "type"}:
            return self._error(400, "only name and identify can be written")
        if body.get("mtUid", mobile.mt_uid) != mobile.mt_uid or body.get("type", mobile.type) != mobile.type:
            return self._error(400, "mtUid and type must be the mobile device's own")
        if "name" in body and (problem := _name_refusal(body["name"], "mobile")):
            return self._error(400, problem)
        mobile.name = body.get("name", mobile.name)
        mobile.identify = bool(body.get("identify", mobile.identify))
        path = f"{MOBILES_PATH}/{mobile.mt_uid}"
        self.writes.append((path, body))
        self._publish([path])
        return web.json_response(mobile.resource())

    async def _put_rf_channel(self, request: web.Request) -> web.Response:
        rf_id = request.match_info["rf_id"]
        if not rf_id.isdigit() or int(rf_id) not in self.rf_khz:
            return self._error(422, "no such RF channel")
        body = await self._body(request)
        # rfChannelId may come along, as Spectera's own client sends it (src/actions.ts "RF - Frequency")
        if not isinstance(body, dict) or "frequency" not in body or not set(body) <= {"frequency", "rfChannelId"}:
            return self._error(400, "only frequency can be written")
        if body.get("rfChannelId", int(rf_id)) != int(rf_id):
            return self._error(400, "rfChannelId must be the RF channel's own")
        khz = body["frequency"]
        if isinstance(khz, bool) or not isinstance(khz, int | float) or khz != int(khz) or int(khz) not in TUNING_KHZ:
            return self._error(400, f"frequency {khz!r} kHz is out of range")
        self.rf_khz[int(rf_id)] = int(body["frequency"])
        path = f"{RF_CHANNELS_PATH}/{rf_id}"
        self.writes.append((path, body))
        self._publish([path])
        return web.json_response(self._read(path))


class Ssc2Fleet:
    """Several simulated SSCv2 devices for demo mode (a hub.hookspecs.DemoFleet)."""

    def __init__(self, count: int = 1, **options: Any) -> None:
        self.simulators = [
            Ssc2Simulator(serial=f"10234567{n:02d}", device_name=f"Spectera {n + 1}", seed=n + 1, **options)
            for n in range(count)
        ]

    async def start(self) -> list[str]:
        for simulator in self.simulators:
            await simulator.start()
        return [simulator.url() for simulator in self.simulators]

    async def stop(self) -> None:
        for simulator in self.simulators:
            await simulator.stop()


async def _serve(arguments: argparse.Namespace) -> None:
    fleet = Ssc2Fleet(arguments.count, password=arguments.password, user=arguments.user, mobiles=arguments.mobiles)
    urls = await fleet.start()
    print("\n".join(urls), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fleet.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated SSCv2 (Spectera-style) devices on loopback.")
    parser.add_argument("--password", default="Stage-Pass-2026")
    parser.add_argument("--user", default=SPECTERA_USER)
    parser.add_argument("--mobiles", type=int, default=4, help="paired transmitters per device")
    parser.add_argument("--count", type=int, default=1, help="how many devices")
    arguments = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(arguments))


if __name__ == "__main__":
    main()
