"""Publish templates: parsed once, rendered per event; bad ones refused at parse time with one line."""

from __future__ import annotations

import json

import pytest

from deliverybench.core.publish_template import PLACEHOLDERS, PublishTemplate, unescape_controls

EVENT = b'{"id":7,"due_ns":1,"sent_ns":2,"stream":"s","pad":"x"}'


def _render(text: str, event: bytes = EVENT) -> bytes:
    return PublishTemplate.parse(text).render(event, channel="room-1", event_id=7)


def test_no_template_and_exactly_event_are_the_identity() -> None:
    for text in ("", "{event}"):
        template = PublishTemplate.parse(text)
        assert template.is_identity and template.render(EVENT, channel="c", event_id=7) is EVENT
    assert not PublishTemplate.parse("{event|json}").is_identity
    assert not PublishTemplate.parse(" {event}").is_identity


def test_every_placeholder_renders() -> None:
    assert _render('{"channel":"{channel}","id":{id},"data":{event}}') == (
        b'{"channel":"room-1","id":7,"data":' + EVENT + b"}")
    assert json.loads(json.loads(_render('{"content":{event|json}}'))["content"]) == json.loads(EVENT)
    assert _render("PUB {channel} {event|length}\r\n{event}\r\n") == b"PUB room-1 %d\r\n%b\r\n" % (len(EVENT), EVENT)
    assert json.loads(_render('{"c":{event|sse|json}}'))["c"] == "data: " + EVENT.decode() + "\n\n"
    assert _render('{"ch":{channel|json},"e":{event}}') == b'{"ch":"room-1","e":' + EVENT + b'}'


def test_json_braces_and_unknown_text_are_literal() -> None:
    assert _render('{{event}}') == b"{" + EVENT + b"}"
    assert _render('{"a":{"b":[{event}]}} {not a placeholder') == b'{"a":{"b":[' + EVENT + b']}} {not a placeholder'


@pytest.mark.parametrize(("text", "words"), [
    ("{evnt}", "unknown placeholder {evnt}"),
    ("{event|upper}", "unknown filter 'upper' in {event|upper}"),
    ('{"channel":"{channel}"}', "has no {event}"),
])
def test_bad_templates_are_one_line_naming_the_problem(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        PublishTemplate.parse(text)
    message = str(caught.value)
    assert words in message and "\n" not in message
    if "placeholder" in words:
        assert all(p in message for p in PLACEHOLDERS)


def test_media_type_follows_what_the_body_starts_with() -> None:
    assert PublishTemplate.parse("").media_type == "application/json"
    assert PublishTemplate.parse(' [{event}]').media_type == "application/json"
    assert PublishTemplate.parse('{"data":{event}}').media_type == "application/json"
    assert PublishTemplate.parse("event={event|json}").media_type == "text/plain"
    assert PublishTemplate.parse("{event|sse}").media_type == "text/plain"


def test_unescape_controls_reads_what_a_command_line_cannot_type() -> None:
    assert unescape_controls(r"CONNECT {}\r\nPING\r\n") == "CONNECT {}\r\nPING\r\n"
    assert unescape_controls(r"a\tb\\n") == "a\tb\\n"  # an escaped backslash stays one backslash
    assert unescape_controls("already\r\n") == "already\r\n"
