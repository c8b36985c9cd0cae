# A small image running the hub as a non-root user. Discovery (mDNS, Shure SLP multicast) needs host
# networking: `docker run --network host ...` (see docs/deployment.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY hub ./hub
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels . ./plugins/shure ./plugins/sennheiser

FROM python:3.11-slim
# a fixed numeric id, so a mounted data directory can be given to it on the host (chown 10001)
RUN groupadd --system --gid 10001 wmhub \
    && useradd --system --uid 10001 --gid wmhub --home-dir /var/lib/wmhub --create-home wmhub
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV WMHUB_DATA_DIR=/var/lib/wmhub \
    WMHUB_HTTP__HOST=0.0.0.0
EXPOSE 8058
ENTRYPOINT ["wmhub"]
CMD ["run", "--demo", "--mqtt", "off"]
