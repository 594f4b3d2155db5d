# The Dagster code location image (also runs the one-shot Metabase provisioning and, in the dev
# container, the developer's tools). Built by docker-compose.yml; never built on the project's CI
# machines (no Docker engine there): tests/unit/test_compose.py checks the compose file statically.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    VOICE_ANALYTICS_HOME=/var/lib/voice-analytics

# make: `make setup` in the dev container; psql: operators' first tool; git: dbt and the dev container
RUN apt-get update \
    && apt-get install -y --no-install-recommends make git postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# dependencies first, for the layer cache (the package itself is re-installed below, cheaply)
COPY pyproject.toml README.md ./
COPY voice_analytics_dagster ./voice_analytics_dagster
RUN pip install -e .

COPY dbt ./dbt
COPY metabase ./metabase
COPY docker/dagster.yaml /opt/dagster/home/dagster.yaml
COPY docker/workspace.yaml /opt/dagster/workspace.yaml
# the dbt manifest is a build product (never parsed at import): prepared once, in the image
RUN dagster-dbt project prepare-and-package --file voice_analytics_dagster/defs/transform/project.py

RUN useradd --create-home --uid 10001 voice \
    && mkdir -p "$VOICE_ANALYTICS_HOME" /data/landing \
    && chown -R voice "$VOICE_ANALYTICS_HOME" /data/landing /opt/dagster /app/dbt
USER voice

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "voice_analytics_dagster.definitions", "--location-name", "voice_analytics"]
