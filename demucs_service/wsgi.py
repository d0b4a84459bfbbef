import os

from django.core.wsgi import get_wsgi_application

from demucs_service.middleware.slow_clients import paced

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demucs_service.settings")
application = paced(get_wsgi_application())
