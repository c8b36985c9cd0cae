"""An MQTT client: paho-mqtt driven by the asyncio loop itself, with no network thread.

paho owns the protocol; asyncio owns the socket. paho's socket callbacks register the socket with the
loop (``add_reader`` -> ``loop_read``, ``add_writer`` -> ``loop_write``) and a timer runs ``loop_misc``
for keep-alive. :meth:`MqttClient.publish` is a plain call: paho queues the packet and the writer
callback flushes everything queued in one go on the next loop iteration, so a burst of publishes costs
one write, not one await each.

The TCP connection (and the TLS handshake) is opened by asyncio and handed to paho, because paho's own
connect blocks the calling thread. Each connection gets a fresh paho client, so nothing stale from a
lost connection (an unacknowledged old retained value) is resent after the fresh state.

Retained topics are kept by topic (:mod:`hub.mqtt.retained`): after every (re)connect the client
re-subscribes and re-publishes all of them, so a broker that lost its retained store (restarted without
persistence) is complete again. Broker URLs, TLS files and the last will are :mod:`hub.mqtt.brokers`; the
socket paho writes into and its opening are :mod:`hub.mqtt.transport`.

A client may be given several brokers (the nodes of a cluster): it connects to the first, and whenever a
connection fails or is lost it tries the next one in turn, waiting the same capped, jittered backoff as
for a single broker. Its last will goes with every connection, to whichever node holds it, and the
retained re-publish after each connect puts the hub's state on the new node (clusters whose retained
store is per node, such as RabbitMQ 3.x, need exactly that).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hub.backoff import Backoff
from hub.clock import SYSTEM_CLOCK, Clock
from hub.mqtt.brokers import BrokerAddress, BrokerUrlError, TlsFiles, Will
from hub.mqtt.frames import qos0_publish, topic_field
from hub.mqtt.retained import RetainedTopics
from hub.mqtt.transport import CoalescingSocket, HandedSocketClient, open_socket

log = logging.getLogger("hub.mqtt")

# (topic, payload, retained): retained is True for a message the broker kept and replays on subscribing
MessageHandler = Callable[[str, bytes, bool], None]
# Bytes waiting for a slow broker beyond which live (QoS 0, not retained) messages are dropped.
MAX_WRITE_BUFFER = 8 * 1024 * 1024
# A connection that lasted this long was a real one: the back-off starts over after it. One the broker
# closes sooner (another client taking the same client id, a broker refusing us after CONNACK) keeps the
# back-off growing, where resetting it on every CONNACK made two hubs with one id take the connection from
# each other five times a second.
STAYED_CONNECTED_S = 5.0
# Connections in a row closed that soon before the log says what that usually means.
SHORT_CONNECTIONS_SAID = 3


class MqttClient:
    """One broker connection, kept up for the client's lifetime. ``on_message`` runs on the loop, in order;
    ``on_connect`` after each connection is made, ``on_disconnect`` after each one is lost.

    ``address`` is one broker or several (tried in turn, see the module's documentation)."""

    def __init__(
        self,
        address: BrokerAddress | Sequence[BrokerAddress],
        client_id: str,
        *,
        on_message: MessageHandler,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        keepalive: int = 60,
        will: Will | None = None,
        tls: TlsFiles | None = None,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
        max_subscription_qos: int = 2,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.addresses = (address,) if isinstance(address, BrokerAddress) else tuple(address)
        if not self.addresses:
            raise BrokerUrlError("an MQTT client needs at least one broker")
        self._current = 0
        self.client_id = client_id
        self.keepalive = keepalive
        self.will = will
        self.connect_timeout = connect_timeout
        # RabbitMQ 3.x keeps a QoS 1 subscription in a durable queue on the node the client was connected to:
        # after that node dies, every reconnect to another node that asks for QoS 1 again is refused
        # (docs/scaling.md). Subscriptions at QoS 0 fail over.
        self.max_subscription_qos = max_subscription_qos
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._tls_context = (tls or TlsFiles()).context() if any(a.tls for a in self.addresses) else None
        self._backoff = backoff or Backoff(base=0.25, cap=30.0)
        self._clock = clock  # the back-off between connection attempts waits on it
        self._paho: HandedSocketClient | None = None
        self._socket: CoalescingSocket | None = None
        self._connected = False
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscriptions: dict[str, int] = {}
        self._unconfirmed_subscribes: set[int] = set()  # message ids of SUBSCRIBEs the broker has not acknowledged
        self._subscribed_event = asyncio.Event()  # set while :attr:`subscribed`
        self._retained = RetainedTopics()  # replayed after each connect
        self._last_info: paho.MQTTMessageInfo | None = None
        self._flush_waiter: asyncio.Event | None = None
        # paho holds packets (QoS 1 and 2) it writes at the loop's next turn: a QoS 0 message written
        # straight to the socket meanwhile would overtake them (a channel's first meters its state)
        self._paho_queued = False
        self._stopping = False
        self.connected_event = asyncio.Event()
        self.connects = 0
        self.failovers = 0
        self.published = 0
        self.dropped = 0
        self.dropped_since_warning = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected, with every subscription asked for acknowledged: a message published now to a topic the
        client subscribed to reaches it (a broker drops one that arrives before its subscription is in place)."""
        return self._connected and not self._unconfirmed_subscribes

    async def wait_subscribed(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until :attr:`subscribed`; whether it is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed_event.wait()
        return self.subscribed

    def _acknowledgements_changed(self) -> None:
        if self.subscribed:
            self._subscribed_event.set()
        else:
            self._subscribed_event.clear()

    @property
    def address(self) -> BrokerAddress:
        """The broker connected to now, or tried next."""
        return self.addresses[self._current]

    def _next_broker(self) -> None:
        """After a failed or lost connection: the next broker of the list (none to change with only one)."""
        if len(self.addresses) > 1:
            self._current = (self._current + 1) % len(self.addresses)
            self.failovers += 1
            log.info("MQTT: trying broker %s next", self.address)

    @property
    def retained_topics(self) -> Mapping[str, tuple[bytes, int]]:
        """The retained topics this client keeps set on the broker, with each payload as kept (large ones
        deflated: :meth:`retains` compares with what was published)."""
        return self._retained.kept

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """The topic filters (and their QoS) the client asks the broker for, again after every reconnect:
        the broker sends it nothing else."""
        return MappingProxyType(self._subscriptions)

    def retains(self, topic: str, payload: bytes, qos: int) -> bool:
        """True when ``topic`` is kept set to exactly this payload and QoS."""
        return self._retained.retains(topic, payload, qos)

    def adopt_retained(self, topic: str, payload: bytes, qos: int) -> None:
        """Keep ``topic`` set to ``payload``, as the broker holds it already (this client's previous run set it):
        re-published after a reconnect as if published now, and nothing is sent for it now."""
        self._retained.keep(topic, payload, qos)

    def forget_retained(self, topic: str) -> None:
        """Stop keeping ``topic`` set (another client publishes it now): left on the broker as it is, and not
        re-published after a reconnect."""
        self._retained.forget(topic)

    # Publishing and subscribing: plain calls, safe whether or not the broker is connected right now

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, keep: bool = True) -> None:
        """Send now if connected. Retained values are kept and re-sent after a reconnect (unless ``keep`` is
        False); other messages are dropped while disconnected."""
        if retain and keep:
            self._retained.keep(topic, payload, qos)
        client = self._paho
        if client is not None and self._connected:
            if qos == 0 and self._socket is not None:
                self._write_qos0(self._socket, topic_field(topic), payload, retain)
            else:
                self._last_info = client.publish(topic, payload, qos, retain)
                self.published += 1
        elif retain and not payload:
            self._retained.owe_clear(topic, qos)
        elif not retain:
            self.dropped += 1

    def publish_live(self, encoded_topic: bytes, payload: bytes) -> None:
        """Send a QoS 0 message that is not retained, its topic already encoded
        (:func:`hub.mqtt.frames.topic_field`): the hub's meters, thousands a second, skip what
        :meth:`publish` decides per message. Dropped while disconnected or while the broker lags."""
        socket = self._socket
        if socket is None or not self._connected:
            self.dropped += 1
        else:
            self._write_qos0(socket, encoded_topic, payload, False)

    def _write_qos0(self, socket: CoalescingSocket, field: bytes, payload: bytes, retain: bool) -> None:
        """QoS 0 needs no state in paho: the packet goes straight into the write buffer, unless it is live
        (not retained) and the broker lags."""
        if not retain and socket.buffered > MAX_WRITE_BUFFER:
            self._shed(field[2:].decode())
            return
        if self._paho_queued:
            self._write_paho_queue()
        socket.send(qos0_publish(field, payload, retain))
        self.published += 1

    def _shed(self, topic: str) -> None:
        """The broker takes less than the hub sends: drop live (QoS 0) messages rather than queue stale ones."""
        if not self.dropped_since_warning:
            log.warning(
                "MQTT broker %s is not keeping up (%d bytes waiting); dropping live messages such as %s",
                self.address,
                MAX_WRITE_BUFFER,
                topic,
            )
        self.dropped_since_warning += 1
        self.dropped += 1

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        qos = min(qos, self.max_subscription_qos)
        if self._subscriptions.get(topic_filter) == qos:
            return
        self._subscriptions[topic_filter] = qos
        if self._paho is not None and self._connected:
            self._awaiting_suback(self._paho.subscribe(topic_filter, qos))

    def unsubscribe(self, topic_filter: str) -> None:
        if self._subscriptions.pop(topic_filter, None) is not None and self._paho is not None and self._connected:
            self._paho.unsubscribe(topic_filter)

    # Lifecycle

    def start(self) -> None:
        """Start connecting in the background; :attr:`connected_event` is set on each connection."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt {self.address}")

    def flush(self) -> None:
        """Write what is buffered now rather than at the end of the loop iteration.

        For state changes: on a loop busy with thousands of receivers the next iteration can be tens of
        milliseconds away, and a change already waited one iteration to reach its consumer."""
        if self._socket is not None:
            self._socket.flush()

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.connected_event.wait()
        return self._connected

    async def stop(self, timeout: float = 2.0) -> int:
        """Deliver what is queued (bounded by ``timeout``), disconnect cleanly (no last will), stop. Returns how
        many QoS 1 and 2 messages the broker had not acknowledged by then: dropped with the connection."""
        self._stopping = True
        client = self._paho
        unacknowledged = 0
        if client is not None and self._connected:
            deadline = time.monotonic() + timeout
            if not self._flushed():
                self._flush_waiter = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._flush_waiter.wait()
            # paho keeps each such message, queued or sent, until the broker acknowledges it (no public count)
            unacknowledged = len(client._out_messages)
            client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._lost.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._drop_connection()
        return unacknowledged

    def _flushed(self) -> bool:
        """Every QoS>0 message acknowledged. Unacknowledged QoS 0 packets need no wait: paho sends its queue
        in order, so they leave before the DISCONNECT that follows them."""
        info = self._last_info
        return info is None or info.is_published()

    async def _run(self) -> None:
        first_failure = True
        short_connections = 0
        while not self._stopping:
            try:
                await self._connect()
            except (OSError, TimeoutError, ssl.SSLError, ConnectionError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.log(
                    logging.WARNING if first_failure else logging.DEBUG,
                    "MQTT broker %s: cannot connect (%s); retrying",
                    self.address,
                    self.last_error,
                )
                first_failure = False
                self._drop_connection()
                self._next_broker()
            else:
                first_failure = True
                connected_at = time.monotonic()  # how long a real connection lasted: not the hub clock
                misc = asyncio.create_task(self._keepalive_ticks())
                try:
                    await self._lost.wait()
                finally:
                    misc.cancel()
                if self._stopping:
                    return
                if time.monotonic() - connected_at >= STAYED_CONNECTED_S:
                    self._backoff.reset()
                    short_connections = 0
                else:
                    short_connections += 1
                if short_connections == SHORT_CONNECTIONS_SAID:
                    log.warning(
                        "MQTT broker %s: closed the connection %d times in a row within %g s of connecting: another "
                        "client may be connecting as %r (two hubs with one hub_id?); reconnecting more slowly",
                        self.address,
                        short_connections,
                        STAYED_CONNECTED_S,
                        self.client_id,
                    )
                else:
                    log.warning("MQTT broker %s: connection lost; reconnecting", self.address)
                self._drop_connection()
                self._next_broker()
            await self._clock.sleep(self._backoff.next_delay())

    async def _keepalive_ticks(self) -> None:
        while self._paho is not None:
            self._paho.loop_misc()
            await asyncio.sleep(1.0)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a cancellation (stop() would hang)
        async with asyncio.timeout(self.connect_timeout):
            sock = await open_socket(loop, self.address, self._tls_context, self.connect_timeout)
        client = HandedSocketClient(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True, reconnect_on_failure=False
        )
        # paho's default window of 20 unacknowledged QoS 1 messages queues the hub's start-up burst (every
        # retained topic of every receiver, thousands of messages) as objects in paho: 22 MB of peak memory at
        # 400 receivers, most of it left behind as a fragmented heap. MQTT 3.1.1 sets no window; the broker
        # acknowledges as fast as it reads, so the bytes wait in the socket buffer instead.
        client.max_inflight_messages_set(0)
        wrapped = CoalescingSocket(sock, loop, lambda exc: self._write_failed(wrapped, exc))
        client.handed_socket = wrapped
        self._socket = wrapped
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.will is not None:
            client.will_set(self.will.topic, self.will.payload, self.will.qos, self.will.retain)
        client.on_socket_open = self._socket_opened
        client.on_socket_close = self._socket_closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write
        client.on_connect = self._connected_cb
        client.on_disconnect = self._disconnected_cb
        client.on_message = self._message_cb
        client.on_publish = self._published_cb
        client.on_subscribe = self._subscribed_cb
        self._paho = client
        self._lost.clear()
        self._connack = loop.create_future()
        client.connect_async(self.address.host, self.address.port, self.keepalive)
        client.reconnect()
        async with asyncio.timeout(self.connect_timeout):
            code = await self._connack
        if code.is_failure:
            raise ConnectionError(f"broker refused the connection: {code}")

    def _drop_connection(self) -> None:
        client, self._paho = self._paho, None
        self._socket = None
        self._connected = False
        self._unconfirmed_subscribes.clear()
        self._acknowledgements_changed()
        self.connected_event.clear()
        if client is not None:
            client._sock_close()

    # paho callbacks (called from loop_read/loop_write, i.e. on the event loop)

    def _socket_opened(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, client, sock)

    def _socket_closed(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        loop.remove_writer(sock.fileno())

    def _want_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # paho's writes go into the coalescing buffer and never block, so one turn of loop_write empties
        # its queue; the socket's writer callback belongs to the buffer
        self._paho_queued = True
        asyncio.get_running_loop().call_soon(self._write_paho_queue)

    def _write_paho_queue(self) -> None:
        self._paho_queued = False
        if self._paho is not None:
            self._paho.loop_write()

    def _no_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        pass

    def _readable(self, client: paho.Client, sock: CoalescingSocket) -> None:
        client.loop_read()
        # TLS may hold decrypted bytes the socket no longer signals as readable
        while client.socket() is sock and sock.pending():
            client.loop_read()

    def _connected_cb(self, client: paho.Client, userdata: Any, flags: Any, code: ReasonCode, props: Any) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(code)
        if code.is_failure or client is not self._paho:
            return
        self._connected = True
        self.connects += 1
        self.last_error = None
        self.dropped_since_warning = 0
        log.info("MQTT broker %s: connected as %s", self.address, self.client_id)
        self._unconfirmed_subscribes.clear()  # a new connection: what the last one asked for is asked again
        if self._subscriptions:
            self._awaiting_suback(client.subscribe(list(self._subscriptions.items())))
        self._acknowledgements_changed()
        for topic, payload, qos in self._retained.replay():
            client.publish(topic, payload, qos, True)
        self.connected_event.set()
        if self._on_connect is not None:
            self._on_connect()

    def _disconnected_cb(self, client: paho.Client, userdata: Any, flags: Any, code: Any, props: Any) -> None:
        if client is self._paho:
            self._connection_lost(f"disconnected before the broker answered ({code})")

    def _write_failed(self, sock: CoalescingSocket, exc: OSError) -> None:
        # A failed write proves the connection gone. Its reader usually says so first, but in some test runs
        # (half of those right after the fault tests) it never fired after the broker's close, cause not found,
        # leaving the hub "connected" to a dead socket until the keep-alive ran out.
        log.debug("MQTT write failed: %s", exc)
        if sock is self._socket:
            self._connection_lost(f"write failed before the broker answered ({exc})")

    def _connection_lost(self, before_connack: str) -> None:
        was_connected, self._connected = self._connected, False
        self.connected_event.clear()
        self._acknowledgements_changed()
        if was_connected and self._on_disconnect is not None:
            self._on_disconnect()
        self._lost.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionError(before_connack))

    def _awaiting_suback(self, sent: tuple[int, int | None]) -> None:
        code, mid = sent
        if code == paho.MQTT_ERR_SUCCESS and mid is not None:  # else the connection is going: the next asks again
            self._unconfirmed_subscribes.add(mid)
            self._acknowledgements_changed()

    def _subscribed_cb(self, client: paho.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        if client is self._paho:
            self._unconfirmed_subscribes.discard(mid)
            self._acknowledgements_changed()

    def _published_cb(self, client: paho.Client, userdata: Any, mid: int, code: Any, props: Any) -> None:
        # paho marks the message published only after this callback returns, hence the mid comparison
        info = self._last_info
        if self._flush_waiter is not None and info is not None and info.mid == mid:
            self._flush_waiter.set()

    def _message_cb(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._on_message(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:  # one bad message must not take the connection down
            log.exception("MQTT message on %s could not be handled", message.topic)
