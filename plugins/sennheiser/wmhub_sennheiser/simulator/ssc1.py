"""A simulated SSCv1 device (EW-DX, EM 6000, SpeechLine DW) over UDP on loopback.

It reflects ``osc/xid``, answers gets and sets leaf by leaf (404 unknown, 406 refused, 424 while the
transmitter is off), keeps subscriptions per client that really expire after their ``lifetime`` with
error 310, meters at the subscribed rate, notifies changes, and injects faults. Run it alone with
``python -m wmhub_sennheiser.simulator --protocol ssc1 --model ewdx-em4``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from wmhub_sennheiser.simulator.common import Client, MdnsAdvertisement, UdpSimulator, command_line, serve
from wmhub_sennheiser.simulator.ssc1_products import PRODUCTS, Refusal
from wmhub_sennheiser.simulator.ssc_json import PING, SUBSCRIBE, XID, Address, Rate, errors, leaves, message, nest

SERVICE_TYPE: Final = "_ssc._udp.local."
MIN_INTERVAL_MS: Final = 50


@dataclass
class SimSubscription:
    client: Client
    paths: frozenset[Address]
    params: Rate
    expires_at: float
    next_due: float = 0.0

    @property
    def periodic(self) -> bool:
        return self.params.max_ms > 0


def _covered(leaf: Address, paths: Iterable[Address]) -> bool:
    """``leaf`` is one of ``paths`` or lies below one of them."""
    return any(leaf[: len(path)] == path for path in paths)


def _has_leaves_under(path: Address, leaves: Iterable[Address]) -> bool:
    return any(leaf[: len(path)] == path for leaf in leaves)


class Ssc1Simulator(UdpSimulator):
    """One SSCv1 device. ``model`` is one of ``PRODUCTS`` (ewdx-em2, ewdx-em4, em6000, sldw, chg70n)."""

    def __init__(
        self,
        model: str = "ewdx-em4",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_s: float = 1.0,
        seed: int = 1,
        advertise: bool = False,
        max_request_bytes: int = 1500,
        max_reply_bytes: int = 4096,
    ) -> None:
        super().__init__(host=host, port=port, tick_s=tick_s, seed=seed)
        if model not in PRODUCTS:
            raise ValueError(f"unknown SSCv1 model {model!r} (known: {', '.join(PRODUCTS)})")
        self.device = PRODUCTS[model]()
        self.model = model
        self.max_request_bytes = max_request_bytes
        self.max_reply_bytes = max_reply_bytes
        self.subscriptions: dict[tuple[Client, frozenset[Address]], SimSubscription] = {}
        self.writes: list[tuple[Address, Any]] = []  # accepted sets, in order
        self.subscribe_requests = 0  # subscription sets received (new or renewed), for tests
        self.end_subscriptions_at_once = False  # fault: every subscription ends with 310 as soon as it is made
        self.refuse_subscriptions: int | None = None  # fault: every subscribed leaf is refused with this code
        self.advertise = advertise
        self._advertisement: MdnsAdvertisement | None = None
        self._published = self.device.leaves()

    @property
    def channels(self) -> list[Any]:
        return self.device.channels

    @property
    def url(self) -> str:
        return f"sennheiser-ssc://{self.host}:{self.port}"

    async def start(self) -> int:
        port = await super().start()
        if self.advertise:
            properties = {"txtvers": "1", "model": self.device.product, "id": self.device.serial or f"{port:x}"}
            instance = f"{self.device.device_name} {port}"
            self._advertisement = MdnsAdvertisement(SERVICE_TYPE, instance, port, properties, self.host)
            await self._advertisement.start()
        return port

    async def stop(self) -> None:
        if self._advertisement is not None:
            await self._advertisement.stop()
        await super().stop()

    # --- what a correct client shows

    def expected_device(self) -> dict[str, Any]:
        return {"name": self.device.device_name, "model": self.device.product, "firmware": self.device.version}

    def expected_facts(self) -> dict[str, Any]:
        return self.device.device_facts()

    def expected_channels(self) -> dict[int, dict[str, Any]]:
        return {channel.index: self.device.expected(channel) for channel in self.device.channels}

    # --- state changes (tests and the animation call these, then subscribers hear of them)

    def set_transmitter(self, index: int, on: bool) -> None:
        channel = self.device.channel(index)
        assert channel is not None, f"no channel {index}"
        channel.tx_on = on
        self.publish()

    def animate(self) -> None:
        self.device.animate(self.rng, self.tx_churn)
        self.publish()

    def forget_clients(self) -> None:
        self.subscriptions.clear()

    def publish(self) -> None:
        """Tell on-change subscribers what changed since the last publish; 424 for vanished transmitter leaves."""
        now = self.device.leaves()
        changed = {leaf: value for leaf, value in now.items() if self._published.get(leaf, object()) != value}
        vanished = [leaf for leaf in self._published if leaf not in now]
        self._published = now
        for subscription in list(self.subscriptions.values()):
            if subscription.periodic:
                continue
            values = {leaf: value for leaf, value in changed.items() if _covered(leaf, subscription.paths)}
            gone = {leaf: 424 for leaf in vanished if _covered(leaf, subscription.paths)}
            if values:
                self._send_json(nest(values), subscription.client)
            if gone:
                self._send_json(errors(gone), subscription.client)

    # --- protocol

    def _send_json(self, body: dict[str, Any], client: Client, xid: int | None = None) -> None:
        self.send(message(body, xid), client)

    def handle(self, data: bytes, client: Client) -> None:
        try:
            request = json.loads(data)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            self._send_json({"osc": {"error": [400]}}, client)
            return
        asked = leaves(request)
        xid = asked.pop(XID, None)
        xid = xid if isinstance(xid, int) else None
        subscribe = asked.pop(SUBSCRIBE, None)
        if len(data) > self.max_request_bytes:
            self._send_json(errors(dict.fromkeys(asked, 413)), client, xid)
            return
        if isinstance(subscribe, list):
            self._subscribe(subscribe, client, xid)
        if asked or subscribe is None:
            self._answer(asked, client, xid)

    def _answer(self, asked: dict[Address, Any], client: Client, xid: int | None) -> None:
        values: dict[Address, Any] = {}
        failed: dict[Address, int] = {}
        current = self.device.leaves()
        wrote = False
        for path, value in asked.items():
            if path == PING:
                values[path] = None
            elif value is None:
                found = {leaf: v for leaf, v in current.items() if leaf[: len(path)] == path}
                if found:
                    values.update(found)
                else:
                    failed[path] = 424 if self.device.transmitter_channel(path) else 404
            else:
                try:
                    values[path] = self.device.write(path, value)
                    self.writes.append((path, values[path]))
                    wrote = True
                except Refusal as refusal:
                    failed[path] = refusal.code
        body: dict[str, Any] = nest(values)
        if failed:
            body.setdefault("osc", {})["error"] = errors(failed)["osc"]["error"]
        reply = message(body, xid)
        if len(reply) > self.max_reply_bytes:
            reply = message(errors(dict.fromkeys(asked, 450)), xid)
        self.send(reply, client)
        if wrote:
            self.publish()

    def _subscribe(self, sets: list[Any], client: Client, xid: int | None) -> None:
        if self.refuse_subscriptions is not None:
            self._refuse(sets, self.refuse_subscriptions, client, xid)
            return
        echo: list[dict[str, Any]] = []
        missing: dict[Address, int] = {}
        current = self.device.leaves()
        started: list[SimSubscription] = []
        for item in sets:
            if not isinstance(item, dict):
                continue
            self.subscribe_requests += 1
            hash_params = item.get("#")
            raw_params: dict[str, Any] = hash_params if isinstance(hash_params, dict) else {}
            paths = list(leaves({k: v for k, v in item.items() if k != "#"}))
            known = [p for p in paths if _has_leaves_under(p, current) or self._is_tx(p)]
            missing.update((p, 454) for p in paths if p not in known)
            key = (client, frozenset(known))
            if raw_params.get("cancel") is True or not known:
                self.subscriptions.pop(key, None)
                continue
            params = Rate.from_hash(raw_params)
            if params.max_ms:
                interval = max(MIN_INTERVAL_MS, params.max_ms)
                params = Rate(max(MIN_INTERVAL_MS, params.min_ms), interval, params.lifetime_s)
            now = time.monotonic()
            subscription = SimSubscription(client, frozenset(known), params, now + params.lifetime_s, now)
            self.subscriptions[key] = subscription
            started.append(subscription)
            echo.append({"#": params.as_hash(raw_params), **nest(known)})
        self._send_json({"osc": {"state": {"subscribe": echo}}}, client, xid)
        if missing:
            inside = errors(missing)["osc"]["error"]
            self._send_json({"osc": {"error": [{"osc": {"state": {"subscribe": inside}}}]}}, client)
        for subscription in started:
            self._notify(subscription, current)
            if self.end_subscriptions_at_once:
                self.subscriptions.pop((client, subscription.paths), None)
                self._send_json(errors(dict.fromkeys(sorted(subscription.paths), 310)), client)

    def _refuse(self, sets: list[Any], code: int, client: Client, xid: int | None) -> None:
        """Answer a subscribe request with ``code`` on every leaf, inside the subscribe tree, and no echo."""
        refused: dict[Address, int] = {}
        for item in sets:
            if isinstance(item, dict):
                self.subscribe_requests += 1
                refused.update(dict.fromkeys(leaves({k: v for k, v in item.items() if k != "#"}), code))
        inside = errors(refused)["osc"]["error"]
        self._send_json({"osc": {"error": [{"osc": {"state": {"subscribe": inside}}}]}}, client, xid)

    def _is_tx(self, path: Address) -> bool:
        return self.device.transmitter_channel(path) is not None

    def _notify(self, subscription: SimSubscription, current: dict[Address, Any]) -> None:
        values = {leaf: value for leaf, value in current.items() if _covered(leaf, subscription.paths)}
        absent = {p: 424 for p in subscription.paths if self._is_tx(p) and not _has_leaves_under(p, values)}
        if values:
            self._send_json(nest(values), subscription.client)
        if absent:
            self._send_json(errors(absent), subscription.client)

    def tick(self, now: float) -> None:
        current: dict[Address, Any] | None = None
        for key, subscription in list(self.subscriptions.items()):
            if now >= subscription.expires_at:
                del self.subscriptions[key]
                ended = dict.fromkeys(sorted(subscription.paths), 310)
                self._send_json(errors(ended), subscription.client)
            elif subscription.periodic and now >= subscription.next_due:
                subscription.next_due = now + subscription.params.max_ms / 1000
                current = current if current is not None else self.device.leaves()
                values = {leaf: value for leaf, value in current.items() if _covered(leaf, subscription.paths)}
                if values:
                    self._send_json(nest(values), subscription.client)


def main(argv: list[str] | None = None) -> None:
    parser = command_line("Simulated SSCv1 devices (JSON over UDP) on loopback.", PRODUCTS, "ewdx-em4")
    parser.add_argument("--zeroconf", action="store_true", help="announce _ssc._udp on loopback")
    arguments = parser.parse_args(argv)

    def make(n: int) -> Ssc1Simulator:
        port = arguments.port if n == 0 else 0
        return Ssc1Simulator(arguments.model, port=port, advertise=arguments.zeroconf, seed=n)

    serve(make, arguments)


if __name__ == "__main__":
    main()
