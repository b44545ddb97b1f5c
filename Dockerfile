# Corral: one image for web (daphne), worker, beat, watcher and migrations; docker-compose.yml and
# the Helm chart (deploy/helm/corral) pick the command.  Runs as the non-root user 10001.
#
# BASE_IMAGE: any Debian bookworm with Python 3.11 (the tests build on a debootstrapped one, as no
# registry is reachable there).  pip's own variables pass through for mirrors or a wheelhouse
# (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, PIP_TRUSTED_HOST); BUILD_PACKAGES="" skips apt
# when every wheel comes pre-built.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG BUILD_PACKAGES="gcc libldap2-dev libsasl2-dev"
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=portal.settings \
    VIRTUAL_ENV=/opt/corral PATH=/opt/corral/bin:$PATH
WORKDIR /app
COPY requirements.txt .
RUN set -eu; \
    if [ -n "$BUILD_PACKAGES" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $BUILD_PACKAGES && rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/corral; \
    pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY . .
# Production settings at build time too: nothing is generated under var/ and baked into the image.
RUN PORTAL_DEBUG=false PORTAL_ALLOWED_HOSTS=build PORTAL_SECRET_KEY=build-only-not-secret-build-only-not-secret-build-only \
      python manage.py collectstatic --noinput -v0 \
    && groupadd --system --gid 10001 corral \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home corral \
    && mkdir -p /app/var && chown corral:corral /app/var
USER 10001:10001
EXPOSE 8000
CMD ["python", "-m", "daphne", "-b", "0.0.0.0", "-p", "8000", "portal.asgi:application"]
