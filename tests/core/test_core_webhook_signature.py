"""The fast Standard Webhooks verifier gives the library's verdict, on anything the library signs or rejects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from math import floor

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from deliverybench.core.webhook_signature import (
    INVALID_TIMESTAMP,
    MISSING_HEADERS,
    NO_MATCH,
    TOLERANCE_US,
    TOO_NEW,
    TOO_OLD,
    SignatureVerifier,
    _parse_timestamp,
)

#: the library's messages, by our verdict's name
_MESSAGES = {
    "Missing required headers": MISSING_HEADERS,
    "Invalid Signature Headers": INVALID_TIMESTAMP,
    "Message timestamp too old": TOO_OLD,
    "Message timestamp too new": TOO_NEW,
    "No matching signature found": NO_MATCH,
}
_TOLERANCE_S = TOLERANCE_US // 1_000_000


def _library_verdict(webhook: Webhook, body: bytes, msg_id: str, stamp: str, signature: str) -> str | None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}
    try:
        webhook.verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        return _MESSAGES[str(exc)]
    return None


secrets = st.one_of(
    st.binary(min_size=1, max_size=100).map(lambda key: "whsec_" + base64.b64encode(key).decode()),
    st.binary(min_size=1, max_size=100).map(lambda key: base64.b64encode(key).decode().rstrip("=")),
    st.binary(min_size=1, max_size=100),
)
msg_ids = st.one_of(st.just(""), st.text(min_size=1, max_size=40),
                    st.from_regex(r"msg_[0-9]{1,6}_[0-9]{1,4}", fullmatch=True))


@st.composite
def stamps(draw: st.DrawFn, now_s: int) -> str:
    """A timestamp header: seconds near ``now_s`` (either side of the window) in any form ``float`` reads."""
    offset = draw(st.one_of(st.integers(-2 * _TOLERANCE_S, 2 * _TOLERANCE_S), st.integers(-10**10, 10**10)))
    assume(abs(abs(offset) - _TOLERANCE_S) > 2)  # never on the edge: the two read the clock microseconds apart
    seconds = now_s + offset
    return draw(st.sampled_from([
        str(seconds), f"{seconds}.{draw(st.integers(0, 999)):03d}", f"0{seconds}", f" {seconds} ",
        f"{seconds}e0", "", "soon", "nan", "inf", "-1", "1e20", str(10**30), f"+{seconds}", f"{seconds}_0",
        f"{seconds}.9999996", f"{seconds}.0000005", f"{seconds}.0000015", "\u0661\u0667", f"-{seconds}.5",
    ]))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str | bytes, bytes, str, str, str]:
    """A secret, and a webhook signed with it (or another) as a sender might, well or badly."""
    secret = draw(secrets)
    body = draw(st.binary(max_size=300))
    msg_id = draw(msg_ids)
    now_s = int(time.time())
    stamp = draw(stamps(now_s))
    try:
        signed_at = datetime.fromtimestamp(float(stamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        signed_at = datetime.fromtimestamp(now_s, tz=UTC)
    signer = Webhook(draw(st.sampled_from([secret, "whsec_b3RoZXI="])))
    good = signer.sign(msg_id, signed_at, body)
    signature = draw(st.sampled_from([
        good, f"v1,bm90IHRoaXM= {good}", f"{good} v2,abc", f"{good}  ", good.replace("v1,", "v2,"), good[:-2],
        "", "v1,", f" {good}", good.upper(),
    ]))
    signed_id = draw(st.sampled_from([msg_id, msg_id + "x"]))  # a signature over another id
    if signed_id != msg_id and signature == good:
        signature = signer.sign(signed_id, signed_at, body)
    return secret, body, msg_id, stamp, signature


@settings(max_examples=600, deadline=None)
@given(cases())
def test_every_verdict_is_the_librarys(case: tuple[str | bytes, bytes, str, str, str]) -> None:
    secret, body, msg_id, stamp, signature = case
    verifier = SignatureVerifier(secret)
    now_us = time.time_ns() // 1000
    ours = verifier.check(body, msg_id.encode(), stamp.encode(), signature.encode(), now_us)
    assert ours == _library_verdict(Webhook(secret), body, msg_id, stamp, signature)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.binary(max_size=500), st.binary(max_size=500))
def test_the_mac_is_hmac_sha256(key: bytes, message: bytes, body: bytes) -> None:
    assert SignatureVerifier(key).mac(message, body) == hmac.new(key, message + body, hashlib.sha256).digest()


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(max_size=300), st.from_regex(r"msg_[0-9]{1,8}", fullmatch=True))
def test_what_the_library_signs_now_verifies(key: bytes, body: bytes, msg_id: str) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body)
    stamp = str(int(now.timestamp())).encode()
    now_us = time.time_ns() // 1000
    assert SignatureVerifier(secret).check(body, msg_id.encode(), stamp, signature.encode(), now_us) is None


def _library_reading(text: str, now_us: int) -> int | str:
    """What ``Webhook.verify`` makes of a timestamp header, with ``datetime`` as the library uses it."""
    try:
        at = datetime.fromtimestamp(float(text), tz=UTC)
    except Exception:
        return INVALID_TIMESTAMP
    now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_us)
    if at < now - timedelta(minutes=5):
        return TOO_OLD
    if at > now + timedelta(minutes=5):
        return TOO_NEW
    return floor(at.timestamp())


texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-7e10, 3e11).map(repr),
    st.decimals(-7 * 10**10, 3 * 10**11, places=7).map(str),
    st.sampled_from(["253402300799.9999995", "253402300799.9999994", "-62135596800.0000004", "-62135596800.0000006",
                     "253402300800", "-62135596801", "1e-7", "-5e-7", "1700000000.0000005", "1700000000.0000015"]),
)


@settings(max_examples=1500, deadline=None)
@given(texts, st.integers(-62_000_000_000 * 10**6, 253_000_000_000 * 10**6))
def test_any_timestamp_is_read_as_the_library_reads_it(text: str, now_us: int) -> None:
    assert _parse_timestamp(text.encode(), now_us) == _library_reading(text, now_us)


@settings(max_examples=1500, deadline=None)
@given(texts, st.integers(-TOLERANCE_US - 2_000_000, TOLERANCE_US + 2_000_000))
def test_a_timestamp_near_now_is_read_as_the_library_reads_it(text: str, offset_us: int) -> None:
    value = float(text)
    assume(-6.2e10 < value < 2.5e11)
    now_us = int(value * 1e6) + offset_us  # the window's edges and its inside, to the microsecond
    assert _parse_timestamp(text.encode(), now_us) == _library_reading(text, now_us)


def test_the_window_is_five_minutes_either_way_to_the_microsecond() -> None:
    secret, now_us = "whsec_c2VjcmV0", 1_700_000_000 * 1_000_000
    verifier, signer = SignatureVerifier(secret), Webhook(secret)

    def at(stamp: int, now: int) -> str | None:
        signature = signer.sign("m", datetime.fromtimestamp(stamp, tz=UTC), b"b").encode()
        return verifier.check(b"b", b"m", str(stamp).encode(), signature, now)

    assert at(1_700_000_300, now_us) is None and at(1_699_999_700, now_us) is None
    assert at(1_700_000_300, now_us - 1) == TOO_NEW and at(1_699_999_700, now_us + 1) == TOO_OLD


def test_an_empty_secret_is_refused_as_the_library_refuses_it() -> None:
    for secret in ("", "whsec_", b""):
        with pytest.raises(EmptyWebhookSecretError):
            SignatureVerifier(secret)
