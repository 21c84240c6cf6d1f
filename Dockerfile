# syntax=docker/dockerfile:1
# The Python here is the one CI tests (scripts/check_container.py compares them).
# Build stage: exactly the locked dependencies (hashes checked), then the project.
FROM python:3.11-slim AS build
WORKDIR /app
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

# Runtime stage: no compilers, non-root user. Migrations are a separate step
# (`payments-api migrate`). With no PAYMENTS_STRIPE_SECRET_KEY the image runs the
# sandbox; a deployment that holds real money sets PAYMENTS_ENVIRONMENT=production,
# which refuses any unsafe setting (docs/operations.md).
FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --home /app app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY alembic.ini ./
COPY alembic ./alembic
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PAYMENTS_HOST=0.0.0.0 \
    PAYMENTS_PORT=8000 \
    PAYMENTS_DATA_DIR=/app/data
RUN mkdir -p /app/data && chown app /app/data
USER app
EXPOSE 8000
# The port the service really listens on, whatever PAYMENTS_PORT is set to.
HEALTHCHECK --interval=10s --timeout=3s --retries=6 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PAYMENTS_PORT', '8000'), timeout=2)"
CMD ["payments-api", "serve"]
