"""An in-process MQTT broker (amqtt) on loopback, so ``wmhub run --demo`` needs nothing installed.

It is meant for the demo and for trying wmhub out: it listens on 127.0.0.1 only, allows anonymous
clients, keeps nothing on disk and speaks MQTT 3.1.1 only (amqtt has no MQTT 5). A venue runs a real
broker (Mosquitto, EMQX) and points ``mqtt.url`` at it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("hub.mqtt")

_PLUGINS = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start (most often: the port is taken)."""


class EmbeddedBroker:
    """``port=0`` lets the OS choose; :attr:`port` holds the bound port once started."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    async def start(self) -> int:
        # imported here: amqtt and its dependencies cost 3 MB of memory in every hub that uses a real broker
        from amqtt.broker import Broker

        class ScopedRetainBroker(Broker):  # type: ignore[misc]  # amqtt is untyped
            """amqtt 0.12 sends a connecting client the retained messages of every subscription on the
            broker, anyone's (its connect handler loops over all of them): a client subscribed to one
            response topic got the hub's device list as its first "answer", and once any client had
            subscribed to ``#``, every later client got the whole retained store. A client gets the retained
            messages of its own subscriptions only."""

            async def _publish_retained_messages_for_subscription(self, subscription: Any, session: Any) -> None:
                subscribers = self._subscriptions.get(subscription[0], ())
                if any(subscriber.client_id == session.client_id for subscriber, _ in subscribers):
                    await super()._publish_retained_messages_for_subscription(subscription, session)

        # amqtt logs every packet at INFO; the hub's own log says what matters
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        broker = ScopedRetainBroker(
            {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}}, "plugins": _PLUGINS}
        )
        try:
            await broker.start()
        except Exception as exc:
            raise EmbeddedBrokerError(
                f"the embedded MQTT broker cannot listen on {self.host}:{self.port} ({exc}); "
                "set mqtt.embedded_port to a free port or mqtt.url to an external broker"
            ) from exc
        self._broker = broker
        self.port = _bound_port(broker, self.port)
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()


def _bound_port(broker: Any, requested: int) -> int:
    """The port the OS gave the listener (amqtt does not expose it; read it from the asyncio server)."""
    server = getattr(broker, "_servers", {}).get("default")
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else requested
