# One image for the web server and the separation workers.
#
#   docker build -t stemfold .                      # CPU torch (the default)
#   docker build -t stemfold:cuda \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .   # CUDA torch
#
# The default command migrates the database and starts gunicorn (the web service);
# the workers run `python manage.py qcluster` instead (docker-compose.yml).
FROM python:3.11-slim

# PyTorch's wheel index, searched besides PyPI: the pinned torch resolves to its
# +cpu build here, or to a CUDA build with a cuXXX index.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    MEDIA_ROOT=/data/media \
    DEMUCS_MODEL_REPO=/data/models \
    HF_HOME=/data/models/huggingface \
    TORCH_HOME=/data/models/torch \
    STATIC_ROOT=/app/staticfiles

RUN useradd --create-home --uid 1000 --user-group app \
    && mkdir -p /data/media /data/models \
    && chown -R app:app /data

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -r requirements.txt

COPY --chown=app:app . .
# Static files are part of the image (whitenoise serves them); DEBUG=1 only so that
# settings load without a SECRET_KEY at build time.
RUN DEBUG=1 python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R app:app /app/staticfiles

USER app
VOLUME ["/data/media", "/data/models"]
EXPOSE 8000

# gunicorn.conf.py: WEB_WORKERS processes of WEB_THREADS threads; `exec` so gunicorn gets the stop signal.
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn demucs_service.wsgi --bind 0.0.0.0:8000"]
