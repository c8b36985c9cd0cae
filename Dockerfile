# A small image running the hub as a non-root user. Discovery (mDNS, Shure SLP multicast) needs host
# networking: `docker run --network host ...` (see docs/deployment.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY plugins ./plugins
RUN pip wheel --no-cache-dir --wheel-dir /wheels . ./plugins/shure ./plugins/sennheiser

FROM python:3.11-slim
RUN useradd --system --home-dir /var/lib/wmhub --create-home wmhub
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER wmhub
ENV WMHUB_DATA_DIR=/var/lib/wmhub \
    WMHUB_HTTP__HOST=0.0.0.0
EXPOSE 8058
ENTRYPOINT ["wmhub"]
CMD ["run", "--demo", "--mqtt", "off"]
