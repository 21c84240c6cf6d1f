# syntax=docker/dockerfile:1
# Build stage: install the project and its dependencies into a virtualenv with uv.
FROM python:3.12-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.5 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN uv venv /opt/venv
COPY pyproject.toml README.md ./
COPY src ./src
RUN VIRTUAL_ENV=/opt/venv uv pip install .

# Runtime stage: no compilers, non-root user. Migrations are a separate step:
#   docker run ... payments-api migrate
FROM python:3.12-slim AS runtime
RUN useradd --system --uid 10001 --home /app app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY alembic ./alembic
COPY src ./src
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PAYMENTS_HOST=0.0.0.0 \
    PAYMENTS_ENVIRONMENT=production
USER app
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["payments-api", "serve"]
