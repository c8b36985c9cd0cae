"""An in-process MQTT broker (amqtt) on loopback, so ``wmhub run --demo`` needs nothing installed.

It is meant for the demo and for trying wmhub out: it listens on 127.0.0.1 only, allows anonymous
clients, keeps nothing on disk and speaks MQTT 3.1.1 only (amqtt has no MQTT 5). A venue runs a real
broker (Mosquitto, EMQX) and points ``mqtt.url`` at it.
"""

from __future__ import annotations

import asyncio
import logging
import os
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

        # amqtt logs every packet at INFO, and at WARNING each client that leaves with a message on its way
        # to it (and a stop's late acknowledgements); the hub's own log says what matters
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        self._quiet_departures(asyncio.get_running_loop())
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
        # a logger's filter does not see its children's records: each of amqtt's loggers, made by now, gets one
        for name in [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "amqtt"]:
            amqtt_log = logging.getLogger(name)
            if not any(isinstance(known, _ClientLeft) for known in amqtt_log.filters):
                amqtt_log.addFilter(_ClientLeft())
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()

    def _quiet_departures(self, loop: asyncio.AbstractEventLoop) -> None:
        """amqtt sends each message to each subscriber in a task of its own that nobody awaits: a subscriber
        that disconnects (``mosquitto_sub`` stopped with Ctrl-C, as the README suggests) left one "Task
        exception was never retrieved" error with a traceback per message in flight. Those are a client
        leaving, not a fault of the hub's."""
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            task = context.get("future")
            if isinstance(task, asyncio.Task) and _of_amqtt(task) and _a_client_left(context.get("exception")):
                log.debug("embedded MQTT broker: a client left with a message on its way to it")
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)


class _ClientLeft(logging.Filter):
    """Drops amqtt's own error lines about a client that has left ("Task failed and will be skipped")."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (_a_client_left(exc) or "closed=True" in record.getMessage())


def _of_amqtt(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}amqtt{os.sep}" in code.co_filename


def _a_client_left(exc: object) -> bool:
    # uvloop says RuntimeError("unable to perform operation on <TCPTransport closed=True …>") where asyncio's
    # own transports raise ConnectionError
    return isinstance(exc, ConnectionError) or (isinstance(exc, RuntimeError) and "closed=True" in str(exc))


def _bound_port(broker: Any, requested: int) -> int:
    """The port the OS gave the listener (amqtt does not expose it; read it from the asyncio server)."""
    server = getattr(broker, "_servers", {}).get("default")
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else requested
