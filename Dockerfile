# drawstate sidecar image: the daemon and its CLI, running as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY client ./client
COPY daemon ./daemon
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[daemon]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/drawstate drawstate \
 && mkdir -p /run/drawstate /var/lib/drawstate \
 && chown drawstate /run/drawstate /var/lib/drawstate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'drawstate[daemon]' && rm -rf /wheels
USER drawstate
ENV DRAWSTATE_SOCKET=/run/drawstate/drawstate.sock \
    DRAWSTATE_DATA_DIR=/var/lib/drawstate \
    DRAWSTATE_LOG_FORMAT=json
VOLUME ["/run/drawstate", "/var/lib/drawstate"]
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["drawstate", "ping", "--timeout", "2"]
ENTRYPOINT ["drawstate", "serve"]
