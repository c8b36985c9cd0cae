"""An in-process MQTT broker (amqtt) on loopback, so ``wmhub run --demo`` needs nothing installed.

It is meant for the demo and for trying wmhub out: it listens on 127.0.0.1 only, allows anonymous
clients, keeps nothing on disk and speaks MQTT 3.1.1 only (amqtt has no MQTT 5). A venue runs a real
broker (Mosquitto, EMQX) and points ``mqtt.url`` at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

log = logging.getLogger("hub.mqtt")

_PLUGINS = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
# How long amqtt's own shutdown may take before the broker's connections are cut: it waits, without a limit,
# for each client's reader to end, and one that keeps reading never does (EmbeddedBroker.stop)
STOP_TIMEOUT_S = 2.0


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start (most often: the port is taken)."""


class EmbeddedBroker:
    """``port=0`` lets the OS choose; :attr:`port` holds the bound port once started."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._broker: Any = None
        # every client connection the broker holds, also those amqtt never made a session of (a CONNECT it
        # is still reading, as an MQTT 5 one it misreads): what its shutdown leaves open is cut at the stop
        self._connections: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        # imported here: amqtt and its dependencies cost 3 MB of memory in every hub that uses a real broker
        from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
        from amqtt.broker import Broker

        connections = self._connections

        class TurnTakingReader(StreamReaderAdapter):  # type: ignore[misc]  # amqtt is untyped
            """amqtt reads a client's packets in a loop that lets the event loop run only when it waits for data,
            and on Python 3.12 ``asyncio.wait_for`` (around each read) no longer runs the read as a task of its
            own: a client that kept sending held the whole hub (web UI, receivers, the stop on SIGTERM) for as
            long as it sent. Each read lets everything else take its turn first."""

            async def read(self, n: int = -1) -> bytes:
                await asyncio.sleep(0)
                data: bytes = await super().read(n)
                return data

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

            async def stream_connected(
                self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
            ) -> None:
                connections.add(writer)
                try:
                    await self.external_connected(TurnTakingReader(reader), StreamWriterAdapter(writer), listener_name)
                except Exception as exc:
                    if not _a_client_left(exc):
                        raise
                    # amqtt answering a client the stop cut (or one that left) on its closed connection
                    log.debug("embedded MQTT broker: a client's connection closed as the broker spoke to it")
                finally:
                    connections.discard(writer)

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
        """amqtt's shutdown, bounded: it cancels each client's reader and waits for it to end, and on Python
        3.11 a cancellation that arrives as a packet has just been read is lost (``asyncio.wait_for``), so a
        client sending at that moment (Node-RED acknowledging the hub's offline state, pinging) kept the reader
        and the hub running for good. What is left open after the bound is cut."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        handlers = [handler for _, handler in getattr(broker, "_sessions", {}).values()]
        finished = False
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await broker.shutdown()
            finished = True
        except TimeoutError:
            log.warning(
                "embedded MQTT broker: its clients did not all disconnect within %.0f s; cutting %d connection(s)",
                STOP_TIMEOUT_S,
                len(self._connections),
            )
        except Exception as exc:  # its connections are cut all the same
            log.warning("embedded MQTT broker: stopping it failed (%s); cutting its connections", exc)
        if not finished:
            for server in getattr(broker, "_servers", {}).values():
                listener = getattr(server, "instance", None)
                if listener is not None:
                    listener.close()  # no new client during the stop's remaining steps
            for handler in handlers:
                # a reader that lost its cancellation ends at its next packet: it checks for a reader each
                # time (cancelling it again loses out the same way while packets keep coming)
                handler.reader = None
        # also those amqtt never made a session of and leaves open (an MQTT 5 CONNECT it is still reading):
        # the event loop's exit would cancel their tasks, an error each in the log
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()
        if not finished:
            # the rest of amqtt's stop (its message loop, the listener, its plugins), its clients gone: else
            # the event loop's exit cancels them and amqtt logs each as an error
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT_S):
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
        message = record.getMessage()
        # "No data from …": a connection that closed before its CONNECT was read (one the stop cut, a probe)
        return not (_a_client_left(exc) or "closed=True" in message or message.startswith("No data from "))


def _of_amqtt(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}amqtt{os.sep}" in code.co_filename


def _a_client_left(exc: object) -> bool:
    # uvloop says RuntimeError("unable to perform operation on <TCPTransport closed=True …>") where asyncio's
    # own transports raise ConnectionError; a client cut by the stop while a packet of it was being handled
    # ends in amqtt's ProtocolHandlerError("Packet handling was cancelled") (named, not imported: internal)
    return (
        isinstance(exc, ConnectionError)
        or (isinstance(exc, RuntimeError) and "closed=True" in str(exc))
        or (type(exc).__name__ == "ProtocolHandlerError" and "cancelled" in str(exc))
    )


def _bound_port(broker: Any, requested: int) -> int:
    """The port the OS gave the listener (amqtt does not expose it; read it from the asyncio server)."""
    server = getattr(broker, "_servers", {}).get("default")
    sockets = getattr(getattr(server, "instance", None), "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else requested
