"""The one redaction every output of the hub goes through: REST answers, MQTT topics, the board, the audit
log, alerts, log lines, configuration errors and the database.

:func:`redact` takes any text (a URL, a log line, a JSON document) and replaces each credential in it with
``***``:

* the password of a ``user:password@host`` userinfo, with or without a scheme in front
  (``mqtts://u:pw@broker``, a mistyped ``mqtts//u:pw@broker``, a bare ``u:pw@host``);
* the value of every ``key=value`` whose key names a secret (``password=``, ``PASSWORD=``, ``token=``,
  ``pass%77ord=``: the key is compared percent-decoded and case-folded, as a driver reading the URL's query
  with ``parse_qsl`` would see it), each occurrence when a key is repeated.

It is deliberately eager: a ``name:value@x`` that is not a credential is masked too, and a secret option's
value is masked up to the next ``&``, ``#`` or whitespace, the only characters that end it for a driver
reading the query (``password=a,b"c)`` is one password), which costs a log line some detail and never leaks
a password.

Text is not structure: redacting a JSON document's text could eat its quotes along with a password, so a
document is redacted with :func:`redact_values` (each string in it) before it is encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import unquote_plus

MASK: Final = "***"
SECRET_KEYS: Final = frozenset({"password", "passwd", "pwd", "pass", "token", "secret", "key", "api_key", "apikey"})

# Where a word starts, searched for in reverse (the first whitespace before a point of the text).
_WORD_START = re.compile(r"\s")
# "key=", where the key starts the text or follows a separator a URL query or a log line uses; only the
# key is matched, so a value ("url=shure://h?password=x") never hides an option inside it
_KEY = re.compile(r"(?<![^?&;,\s'\"{(])([^?&;,=\s'\"{}()]+)=")
# where a value ends for parse_qsl (which splits on "&" alone) and for urlsplit (the fragment)
_VALUE_END = re.compile(r"[&\s#]|$")


def _userinfo_passwords(text: str) -> Iterator[tuple[int, int]]:
    """The password of each ``user:password@`` in ``text``: for each '@', from the first ':' after the
    nearest '://' before it on its line (or, with no scheme, after the start of its word) up to the '@'.
    So a password may hold spaces, quotes, '@', '//' and commas, and each URL of a comma-separated broker
    list is masked on its own. An '@' that starts its line (after blanks) ends the userinfo of the line
    before: a password read from a file with its line break, written before ``@host``."""
    at = text.find("@")
    while at >= 0:
        line_start = text.rfind("\n", 0, at) + 1
        while line_start and not text[line_start:at].strip():
            line_start = text.rfind("\n", 0, line_start - 1) + 1
        scheme = text.rfind("://", line_start, at)
        if scheme >= 0:
            start = scheme + 3
        else:
            before = text[line_start:at].rstrip()
            word = _WORD_START.search(before[::-1])
            start = line_start + len(before) - word.start() if word is not None else line_start
        colon = text.find(":", start, at)
        if 0 <= colon < at - 1:  # user@host and user:@host hold nothing secret
            yield colon + 1, at
        at = text.find("@", at + 1)


def _option_values(text: str) -> Iterator[tuple[int, int]]:
    for key in _KEY.finditer(text):
        if unquote_plus(key.group(1)).strip().lower() in SECRET_KEYS:
            end = _VALUE_END.search(text, key.end())
            yield key.end(), end.start() if end is not None else len(text)


def redact(text: str) -> str:
    """``text`` with every password and secret option replaced by ``***`` (safe to call on any string).

    Both kinds are found in the text as given and masked together: masking one first could hide the other's
    start (a ``password=`` inside a userinfo) or end (an ``@`` inside an option's value)."""
    spans = sorted(
        [*(_userinfo_passwords(text) if "@" in text else ()), *(_option_values(text) if "=" in text else ())]
    )
    if not spans:
        return text
    pieces: list[str] = []
    done = 0
    for start, stop in spans:
        if start < done:  # overlaps the span masked last: one mask covers both
            done = max(done, stop)
            continue
        pieces += [text[done:start], MASK]
        done = stop
    return "".join(pieces) + text[done:]


def redact_values(value: Any) -> Any:
    """``value`` (a JSON-like document of dicts, lists and scalars) with every string in it redacted, keys
    included: encoded afterwards it is still the same document, whatever a password held."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_values(key): redact_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_values(item) for item in value]
    return value


def redacted_text(value: object) -> str:
    """``str(value)`` redacted: the ``default`` of a JSON encoder fed :func:`redact_values`' output, for what
    it cannot encode itself (a datetime, an exception)."""
    return redact(str(value))
