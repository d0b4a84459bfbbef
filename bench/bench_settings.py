"""Settings for the benchmarks' servers: the product's settings, with the bench URLconf.

DJANGO_SETTINGS_MODULE=bench.bench_settings. Nothing here changes how the product behaves; it only
adds `/bench/constant` (bench/bench_urls.py), which the product does not have.
"""

from demucs_service.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
