# One image for the web server and the workers. CPU torch by default; build with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 for CUDA.
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -r requirements.txt
COPY . .
RUN DEBUG=1 python manage.py collectstatic --noinput --verbosity 0
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && gunicorn demucs_service.wsgi --bind 0.0.0.0:8000 --workers ${WEB_WORKERS:-3} --threads 4"]
