# Dockyard's own image, for docker-compose.yml: the web process and the workers run from it.
# haproxy, socat and busybox-static are not run here: the hosts' proxy image is made of them.
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git haproxy socat busybox-static \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/dockyard
COPY pyproject.toml README.md ./
RUN pip install --no-cache-dir .
COPY . .
ENV DOCKYARD_DATA_DIR=/var/lib/dockyard PYTHONUNBUFFERED=1 DOCKYARD_VENV_BIN=/usr/local/bin
RUN DOCKYARD_SECRET_KEY=collectstatic-only-not-a-real-secret-key-000000 \
    python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["scripts/web.sh", "0.0.0.0", "8000"]
