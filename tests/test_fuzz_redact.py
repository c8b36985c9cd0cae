"""Bad input against the one redaction every output goes through (hub.redact): a password in any form a
device or broker URL can carry it, inside any surrounding text, never survives."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st

from hub.redact import MASK, SECRET_KEYS, redact
from tests.reliability_report import fuzz

# Letters no secret key, scheme, host or surrounding text holds: any of them left in the output is a piece
# of a password that leaked.
PASSWORD_LETTERS = "BFGHJLMQUVXZ"
# what a password may hold unencoded in a URL and a driver reads back whole (no '/', '?', '#', '&' or
# whitespace; quotes, brackets, commas and semicolons are the password's own)
PASSWORD = st.text(st.sampled_from(PASSWORD_LETTERS + "-._~!$*+:@%;,=\"'(){}"), min_size=1, max_size=20).map(
    lambda text: "B" + text + "Z"
)
WORD = st.text(st.sampled_from("abcdefxyz0123456789-."), min_size=1, max_size=12)
AROUND = st.sampled_from(["", "device ", "'", '{"url": "', "added ", "(got '", "url="])


def _key(name: str, upper: list[bool], encode_at: int) -> str:
    """A secret key in any case, one of its letters percent-encoded (``pass%77ord``) when ``encode_at`` says."""
    cased = "".join(
        char.upper() if flag else char for char, flag in zip(name, upper + [False] * len(name), strict=False)
    )
    if 0 <= encode_at < len(cased) and cased[encode_at].isalpha():
        cased = f"{cased[:encode_at]}%{ord(cased[encode_at]):02x}{cased[encode_at + 1 :]}"
    return cased


@fuzz(
    "hub.redact.redact",
    "device and broker URLs with a password as user:pw@ (with, without or with a mistyped scheme) and as secret "
    "options (any case, repeated, percent-encoded key), inside log lines, JSON and error messages",
    "no password survives; the text around it does; redacting again changes nothing",
    password=PASSWORD,
    second=PASSWORD,
    user=WORD,
    host=WORD,
    key=st.sampled_from(sorted(SECRET_KEYS)),
    upper=st.lists(st.booleans(), max_size=10),
    encode_at=st.integers(-3, 8),
    scheme=st.sampled_from(["mqtts://", "shure://", "sennheiser-ssc2://", "mqtts//", ""]),
    before=AROUND,
    form=st.sampled_from(["userinfo", "option", "repeated"]),
)
def test_no_password_survives(
    password: str,
    second: str,
    user: str,
    host: str,
    key: str,
    upper: list[bool],
    encode_at: int,
    scheme: str,
    before: str,
    form: str,
) -> None:
    if form == "userinfo":
        url = f"{scheme}{user}:{password}@{host}:2202"
    else:
        name = _key(key, upper, encode_at)
        url = f"{scheme or 'shure://'}{host}:2202?{name}={password}&user={user}"
        if form == "repeated":
            url += f"&{key.upper()}={second}&{name}={second}"
    text = f"{before}{url}{before[::-1]} and more"
    shown = redact(text)
    assert not any(letter in shown for letter in PASSWORD_LETTERS), (text, shown)
    assert MASK in shown and shown.endswith(" and more") and host in shown
    assert redact(shown) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (  # a broker cluster: each URL's password, not only the last one's
            "(got 'mqtt://u:Secret1@127.0.0.1:bad,mqtt://u:Secret2@127.0.0.1:1883')",
            "(got 'mqtt://u:***@127.0.0.1:bad,mqtt://u:***@127.0.0.1:1883')",
        ),
        ("(got 'mqtt://u:Pass Word@127.0.0.1:bad')", "(got 'mqtt://u:***@127.0.0.1:bad')"),  # a space in it
        ("mqtt://u:Slash//Es@broker:1883", "mqtt://u:***@broker:1883"),  # '//' in it
        # a secret file's line break (on Windows, two) between the password and the '@', with a scheme or none
        ("mqtt://u:Secret1\n@broker:1883", "mqtt://u:***@broker:1883"),
        ("(got 'u:Secret1\r\n\n  @broker')", "(got 'u:***@broker')"),
    ],
)
def test_passwords_a_word_boundary_would_have_cut(text: str, shown: str) -> None:
    assert redact(text) == shown
