# drawstate sidecar image: the daemon and its CLI in a venv, running as a non-root user.
# The install step is the README's (`pip install '.[daemon]'`), compiled (a C compiler in the build
# stage only); tests/integration/test_deploy.py checks it.
FROM python:3.11-slim AS build
RUN python -m venv /opt/drawstate
ENV PATH=/opt/drawstate/bin:$PATH
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY client ./client
COPY daemon ./daemon
# A C compiler in this stage only: the install compiles the hot path (setup.py); the image stays slim.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir '.[daemon]'
# Fail the build rather than ship the pure-Python fallback by accident.
RUN python -c 'import drawstate; raise SystemExit(drawstate.hot_path() != "compiled")'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/drawstate --shell /usr/sbin/nologin drawstate \
 && mkdir -p /run/drawstate /var/lib/drawstate \
 && chown drawstate:drawstate /run/drawstate /var/lib/drawstate \
 && chmod 0750 /run/drawstate /var/lib/drawstate
COPY --from=build /opt/drawstate /opt/drawstate
ENV PATH=/opt/drawstate/bin:$PATH \
    DRAWSTATE_SOCKET=/run/drawstate/drawstate.sock \
    DRAWSTATE_DATA_DIR=/var/lib/drawstate \
    DRAWSTATE_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/run/drawstate", "/var/lib/drawstate"]
# Exit 0 only when the daemon answers and its Redis is up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["drawstate", "ping", "--timeout", "2"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["drawstate", "serve"]
