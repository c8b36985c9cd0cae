"""An in-process MQTT broker (amqtt) on loopback, so ``wmhub run --demo`` needs nothing installed.

It is meant for the demo and for trying wmhub out: it listens on 127.0.0.1 only, allows anonymous
clients and keeps nothing on disk. A venue runs a real broker (Mosquitto, EMQX) and points
``mqtt.url`` at it.
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

        # amqtt logs every packet at INFO; the hub's own log says what matters
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        broker = Broker(
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
