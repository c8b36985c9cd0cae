"""The one redaction every output of the hub goes through: REST answers, MQTT topics, the board, the audit
log, alerts, log lines, configuration errors and the database.

:func:`redact` takes any text (a URL, a log line, a JSON document) and replaces each credential in it with
``***``:

* the password of a ``user:password@host`` userinfo, with or without a scheme in front
  (``mqtts://u:pw@broker``, a mistyped ``mqtts//u:pw@broker``, a bare ``u:pw@host``);
* the value of every ``key=value`` whose key names a secret (``password=``, ``PASSWORD=``, ``token=``,
  ``pass%77ord=``: the key is compared percent-decoded and case-folded, as a driver reading the URL's query
  with ``parse_qsl`` would see it), each occurrence when a key is repeated.

It is deliberately eager: a ``name:value@x`` that is not a credential is masked too, which costs a log line
some detail and never leaks a password.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote_plus

MASK: Final = "***"
SECRET_KEYS: Final = frozenset({"password", "passwd", "pwd", "pass", "token", "secret", "key", "api_key", "apikey"})

# Text between delimiters that never occur unencoded in a URL: a "word" that may hold a userinfo.
_WORD = re.compile(r"[^\s'\"<>`]+")
# "key=", where the key starts the text or follows a separator a URL query or a log line uses; only the
# key is matched, so a value ("url=shure://h?password=x") never hides an option inside it
_KEY = re.compile(r"(?<![^?&;,\s'\"{(])([^?&;,=\s'\"{}()]+)=")
# where a value ends
_VALUE_END = re.compile(r"[&;,\s'\"}#)]|$")


def _mask_userinfo(word: re.Match[str]) -> str:
    text = word.group(0)
    at = text.rfind("@")  # the host follows the last '@': a password may hold an '@' of its own
    if at < 0:
        return text
    start = text.rfind("//", 0, at)
    start = 0 if start < 0 else start + 2
    colon = text.find(":", start, at)
    if colon < 0 or colon == at - 1:
        return text  # user@host or user:@host: nothing secret
    return f"{text[: colon + 1]}{MASK}{text[at:]}"


def _mask_options(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for key in _KEY.finditer(text):
        if key.start() < done or unquote_plus(key.group(1)).strip().lower() not in SECRET_KEYS:
            continue  # inside a value already masked, or not a secret
        end = _VALUE_END.search(text, key.end())
        stop = end.start() if end is not None else len(text)
        pieces += [text[done : key.end()], MASK]
        done = stop
    return "".join(pieces) + text[done:] if pieces else text


def redact(text: str) -> str:
    """``text`` with every password and secret option replaced by ``***`` (safe to call on any string)."""
    if "@" in text:
        text = _WORD.sub(_mask_userinfo, text)
    if "=" in text:
        text = _mask_options(text)
    return text
