"""How one target speaks: what travels beside the URLs from the target to every subscriber and the publisher.

The harness's own contract (POST an event, get it back verbatim on every
subscription) fits nginx + nchan and little else. Real servers wrap events
in an envelope, want a subscribe message after the handshake, frame messages
their own way, or take a publish request of their own shape. A
:class:`Dialect` names all of that as plain strings, so it crosses every
boundary the URLs cross -- ``run_bench.py`` to its Locust (flags), the
master to its workers (msgpack), a TOML file -- and means the same on each.
The codecs that act on it live in :mod:`deliverybench.core.protocols` and
:mod:`deliverybench.core.publish_template`; this module only declares it.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Dialect", "PROTOCOLS", "WEBHOOK_SIGNINGS", "DEFAULT_CHANNEL", "dialect_from_values", "DIALECT_DESTS"]

#: subscriber protocols: ``raw`` (each WebSocket message is one event, or an envelope holding it when an
#: event path is given), ``nats`` (NATS text protocol: CONNECT/SUB, MSG framing, PING/PONG), ``socketio``
#: (Engine.IO 4 / Socket.IO 5: open, 40 connect, 42 events, 2/3 ping/pong), ``graphql-ws`` (the
#: graphql-transport-ws subprotocol: connection_init, wait for connection_ack, subscribe, next), ``mqtt``
#: (MQTT 3.1.1 over WebSocket: CONNECT and SUBSCRIBE at QoS 0, PUBLISH packets, in binary frames)
PROTOCOLS: tuple[str, ...] = ("raw", "nats", "socketio", "graphql-ws", "mqtt")
#: how a webhook sender signs its deliveries: ``standard-webhooks`` (``webhook-id``, ``webhook-timestamp``,
#: ``webhook-signature``, verified with the secret) or ``none`` (a sender that signs nothing, as Alertmanager)
WEBHOOK_SIGNINGS: tuple[str, ...] = ("standard-webhooks", "none")
#: the channel (subject, topic, room) events are published to and subscribed on, unless told otherwise
DEFAULT_CHANNEL = "deliverybench"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What a subscriber sends and expects, and how an event is published; every field a plain string.

    Attributes:
        protocol: one of :data:`PROTOCOLS`.
        channel: the channel published to and subscribed on (``{channel}`` in templates and messages).
        subscribe_message: sent as one text frame once a subscriber's connection is open (``raw``);
            for ``graphql-ws`` the subscribe payload's query; ``{channel}`` is replaced.
        event_path: a JSON pointer to the event inside each message (``/data``,
            ``/payload/data/onEvent``; ``*`` stands for every element of an array); empty: the message
            (or the protocol's payload) is the event itself.
        publish_template: the publish body around the event (``{event}``, ``{event|json}``,
            ``{event|sse|json}``, ``{event|length}``, ``{channel}``, ``{id}``); empty: the event alone.
        publish_greeting: sent once on each publisher connection of a ``ws://`` or ``tcp://`` ingress
            (NATS's ``CONNECT``), ``{channel}`` replaced.
        longpoll_resume: how a long-poll subscriber resumes: ``after`` (``?after=N`` and ``X-Last-Id``,
            the built-in target's) or ``etag`` (``If-Modified-Since`` + ``If-None-Match``, nchan's).
        webhook_signing: one of :data:`WEBHOOK_SIGNINGS`: whether a callback sender's deliveries are verified.
    """

    protocol: str = "raw"
    channel: str = DEFAULT_CHANNEL
    subscribe_message: str = ""
    event_path: str = ""
    publish_template: str = ""
    publish_greeting: str = ""
    longpoll_resume: str = "after"
    webhook_signing: str = "standard-webhooks"

    @property
    def verbatim(self) -> bool:
        """Whether events travel as the harness wrote them, both ways (the relay contract)."""
        return (self.protocol == "raw" and not self.subscribe_message and not self.event_path
                and not self.publish_template and not self.publish_greeting and self.longpoll_resume == "after"
                and self.webhook_signing == "standard-webhooks")

    def to_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> dict[str, str]:
        """The fields that differ from the defaults, for the results file (empty for the relay contract)."""
        default = Dialect()
        return {k: v for k, v in self.to_dict().items() if v != getattr(default, k)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dialect:
        """A dialect from plain values (msgpack, option values); missing or empty fields keep the defaults."""
        default = cls()
        return cls(**{f.name: str(data.get(f.name) or getattr(default, f.name)) for f in fields(cls)})


#: the option ``dest`` of each dialect field (the option table declares them, with these names)
DIALECT_DESTS: dict[str, str] = {"protocol": "protocol", "channel": "channel",
                                 "subscribe_message": "subscribe_message", "event_path": "event_path",
                                 "publish_template": "publish_template", "publish_greeting": "publish_greeting",
                                 "longpoll_resume": "longpoll_resume", "webhook_signing": "webhook_signing"}


def dialect_from_values(values: Mapping[str, Any]) -> Dialect:
    """The dialect the option values give (a ``run_bench.py`` config, or a Locust's parsed options)."""
    return Dialect.from_dict({name: values.get(dest) for name, dest in DIALECT_DESTS.items()})
