# The edgewatch image: one image, the service is the subcommand (ingest, simulate, dashboard,
# stack bootstrap). Built by docker-compose.yml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    EDGEWATCH_STATE_DIR=/state

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY edgewatch ./edgewatch
COPY shared ./shared
COPY ingest ./ingest
COPY edge ./edge
COPY dashboard ./dashboard
COPY stack ./stack
COPY bench ./bench
# The runtime dependencies at the versions the tests passed with (the lock also pins the
# dev tools, which a constraints file does not install).
RUN pip install -c requirements.lock . \
    && useradd --system --uid 10001 --home-dir /app edgewatch \
    && mkdir -p /state /users /run/edgewatch \
    && chown edgewatch /state /users
COPY .streamlit ./.streamlit
COPY deploy/docker/entrypoint.sh /usr/local/bin/edgewatch-entrypoint
COPY deploy/docker/healthcheck.py /usr/local/bin/edgewatch-healthcheck

USER edgewatch
ENTRYPOINT ["/usr/local/bin/edgewatch-entrypoint"]
CMD ["--help"]
