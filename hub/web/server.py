"""The hub's web edge: the status board, the REST API, the live feed and metrics on one aiohttp server.

``WebServer(hub, venue)`` is built by the composition root (hub.compose) when ``http.enabled``; the venue
and frequency routes and the database and alert metrics exist only when it is given a venue store (the
fleet board has none). ``await start()`` binds ``http.host:http.port`` (port 0 picks a free one, read it
back from ``server.port``) and ``await stop()`` closes every connection. Writes and control always need
``Authorization: Bearer <token>``; reads need it only when ``http.open_reads`` is false. The token is
``http.token`` or, when unset, the one stored in ``<data_dir>/api-token`` (mode 600), generated and logged
once at the first start.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler as AiohttpHandler
from swagger_ui_bundle import swagger_ui_path

from hub.auth import token_matches
from hub.service import HubService, VenueService
from hub.web.api import AUTHORIZED_KEY, HUB_KEY, LIVE_COUNT_KEY, OPERATIONS
from hub.web.frequency import FREQUENCY_OPERATIONS
from hub.web.guard import ConnectionLimits, GuardedSite, host_of, our_host_names, same_origin
from hub.web.live import LiveFeed
from hub.web.metrics import CONTENT_TYPE, Metrics
from hub.web.openapi import build_document
from hub.web.routing import (
    HTTP_ERROR_CODES,
    MAX_BODY_BYTES,
    ApiError,
    Handler,
    Operation,
    error_response,
    json_response,
)
from hub.web.venue import VENUE_KEY, VENUE_OPERATIONS

log = logging.getLogger("hub.web")

STATIC_DIR: Final = Path(__file__).parent / "static"
# Swagger UI's files as the swagger-ui-bundle-v2 wheel ships them: /api/docs works on a venue LAN with no internet
SWAGGER_UI_DIR: Final = Path(str(swagger_ui_path))
SWAGGER_UI_FILES: Final = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
STARTED_KEY: Final = web.RequestKey("wmhub_started", float)
LIVE_PATH: Final = "/api/v1/live"
CORS_METHODS: Final = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, body too large) in the API's JSON error shape."""
    response = error_response(exc.status, HTTP_ERROR_CODES.get(exc.status, "http_error"), exc.reason)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


class WebServer:
    name = "web"

    def __init__(
        self, hub: HubService, venue: VenueService | None, extra_operations: tuple[Operation, ...] = ()
    ) -> None:
        self.hub = hub
        self.venue = venue
        self.settings = hub.config.http
        self.token = hub.api_token
        # where the person refused finds the token (a token set by hand leaves any old api-token file stale); the
        # file by name, not by path: "<data_dir>/api-token" read as a directory of that name, and the real path
        # would tell anyone on the network where the hub keeps its data
        self._token_source = (
            "the http.token setting" if self.settings.token else "see the file api-token in the hub's data_dir"
        )
        self.live = LiveFeed(hub, self.settings.live_interval_s, self.settings.live_queue)
        self.metrics = Metrics(hub, self.live, venue)
        # the venue routes exist only with a store; without one they answer 404 like any unknown path
        venue_operations = VENUE_OPERATIONS + FREQUENCY_OPERATIONS if venue is not None else ()
        self.operations = OPERATIONS + venue_operations + extra_operations
        self.openapi = build_document(self.operations, open_reads=self.settings.open_reads)
        self._static_files = frozenset(path.name for path in STATIC_DIR.iterdir() if path.is_file())
        self.limits = ConnectionLimits(self.settings.max_connections_per_client, self.settings.header_timeout_s)
        self.host_names = our_host_names(self.settings)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # lifecycle

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, shutdown_timeout=2.0)  # its connections' handlers: GuardedSite
        await self._runner.setup()
        site = GuardedSite(self._runner, self.settings.host, self.settings.port, self.limits)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        host = self.settings.host
        log.info("status board and API on http://%s:%s/", f"[{host}]" if ":" in host else host, self.port)

    async def stop(self) -> None:
        await self.live.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # app

    def _build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors, self._our_host, self._cors_preflight], client_max_size=MAX_BODY_BYTES
        )
        app[HUB_KEY] = self.hub
        if self.venue is not None:
            app[VENUE_KEY] = self.venue
        app[LIVE_COUNT_KEY] = lambda: len(self.live.clients)
        for op in self.operations:
            handler = self._guard(op.handler, write=op.write)
            if op.method == "GET":
                app.router.add_get(op.path, handler)  # and HEAD, which uptime checkers send
            else:
                app.router.add_route(op.method, op.path, handler)
        app.router.add_get("/api/openapi.json", self._guard(self._openapi, write=False))
        app.router.add_get("/api/docs", self._docs)
        app.router.add_get("/api/docs/{name}", self._docs_asset)
        app.router.add_get("/metrics", self._guard(self._metrics, write=False))
        app.router.add_get(LIVE_PATH, self._guard(self.live.handle, write=False))
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.on_response_prepare.append(self._decorate)
        return app

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            # browsers cannot set headers on a WebSocket, so the live feed also takes ?token=
            given = request.query.get("token", "") if request.path == LIVE_PATH else ""
        return token_matches(given, self.token)

    def _guard(self, handler: Handler, *, write: bool) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            request[AUTHORIZED_KEY] = authorized = self._authorized(request)
            if (write or not self.settings.open_reads) and not authorized:
                raise ApiError(
                    401,
                    "unauthorized",
                    f"this needs 'Authorization: Bearer <token>' ({self._token_source})",
                )
            return await handler(request)

        guarded.__name__ = handler.__name__
        return guarded

    @web.middleware
    async def _errors(self, request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
        request[STARTED_KEY] = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.error, exc.details)
            response.headers.update(exc.headers)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = http_error(exc)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            response = error_response(500, "internal", "internal error (logged by the hub)")
        if response.status == 201 and self.hub.degraded() is not None:
            response.set_status(202)  # created, but only in memory until the database can be written again
        self.metrics.http_requests.labels(request.method, route, str(response.status)).inc()
        return response

    @web.middleware
    async def _our_host(self, request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
        """Refuse a Host that is not this hub (DNS rebinding), and a live feed opened by a foreign page."""
        host = request.headers.get("Host")
        if host is not None and host_of(host) not in self.host_names:
            raise ApiError(421, "wrong_host", "this hub is not reached by that name (see http.allowed_hosts)")
        origin = request.headers.get("Origin")
        if (
            request.path == LIVE_PATH
            and origin is not None
            and origin not in self.settings.cors_origins
            and not same_origin(origin, host or self.settings.host)
        ):
            raise ApiError(403, "foreign_origin", "the live feed is not open to pages of another site")
        return await handler(request)

    @web.middleware
    async def _cors_preflight(self, request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin in self.settings.cors_origins:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                },
            )
        return await handler(request)

    async def _decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        started = request.get(STARTED_KEY)
        if started is not None:
            response.headers["X-Response-Time"] = f"{(time.perf_counter() - started) * 1000:.2f}ms"
        origin = request.headers.get("Origin")
        if origin is not None and origin in self.settings.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # no other site may frame the board (clickjacking a mute button)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")

    async def _openapi(self, request: web.Request) -> web.Response:
        return json_response(self.openapi)

    async def _metrics(self, request: web.Request) -> web.Response:
        # a reader without the token sees devices that never answered alike (hub.devices.ManagedDevice.health)
        response = web.Response(body=self.metrics.render(request.get(AUTHORIZED_KEY, False)))
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _docs(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "docs.html", headers={"Cache-Control": "no-cache"})

    async def _docs_asset(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if name not in SWAGGER_UI_FILES:
            raise ApiError(404, "not_found", f"no API docs file {name!r}")
        return web.FileResponse(SWAGGER_UI_DIR / name)

    async def _static(self, request: web.Request) -> web.FileResponse:
        # only the board's own files, by exact name: nothing else on disk is reachable
        name = request.match_info["name"]
        if name not in self._static_files:
            raise ApiError(404, "not_found", f"no static file {name!r}")
        return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})


__all__ = ["Operation", "WebServer"]
