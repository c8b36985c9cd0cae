"""Recognising SSC devices announced over DNS-SD, confirmed by asking them who they are."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from hub.drivers import DriverSettings
from hub.hookspecs import Candidate, DiscoveredService, NoAnswer
from wmhub_sennheiser import ssc1
from wmhub_sennheiser.families import family_for
from wmhub_sennheiser.ssc1_driver import DEVICE_NAME, IDENTITY, SCHEME, VENDOR, SscClient

SSC_UDP: Final = "_ssc._udp.local."
SSC_TCP: Final = "_ssc._tcp.local."
SERVICE_TYPES: Final = (SSC_UDP, SSC_TCP)
PROBE_RETRY_S: Final = 0.25


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


async def identify_ssc_service(service: DiscoveredService, settings: DriverSettings) -> Candidate | None:
    """A Candidate for an SSCv1 receiver at the SRV host and port, or None.

    TXT keys are read case-insensitively (``model`` / ``Model``; the spec leaves this unverified). Only
    ``_ssc._udp`` leads to a candidate: a device serving SSC over TCP alone (Neumann speakers) is no receiver.
    """
    if service.service_type.lower() != SSC_UDP:
        return None
    txt = {key.lower(): value for key, value in service.properties.items()}
    announced = _text(txt.get("model"))
    if announced is not None and family_for(announced) is None:
        return None  # announces itself as something else (a charger, a speaker): no need to ask
    client = SscClient(service.host, service.port, PROBE_RETRY_S, lambda message: None)
    # the hub bounds this hook by io_timeout_s: give up a little earlier, with an answer
    deadline_s = settings.io_timeout_s * 0.8
    try:
        async with asyncio.timeout(deadline_s):
            reply = await client.open(ssc1.tree([*IDENTITY, DEVICE_NAME]), deadline_s)
    except TimeoutError:
        # not answering SSCv1 (yet): still booting, or an EW-DX in secure (SSCv2) mode; the hub asks again later
        raise NoAnswer(f"no SSCv1 answer within {deadline_s:g} s") from None
    finally:
        with contextlib.suppress(Exception):
            client.close()
    product = _text(reply.values.get(IDENTITY[0]))
    if product is None or family_for(product) is None:
        return None
    host = f"[{service.host}]" if ":" in service.host else service.host
    return Candidate(
        url=f"{SCHEME}://{host}:{service.port}",
        vendor=VENDOR,
        model=product,
        unique_id=_text(reply.values.get(IDENTITY[1])) or _text(txt.get("id")),
        name=_text(reply.values.get(DEVICE_NAME)) or service.name or None,
        source="mdns",
    )
