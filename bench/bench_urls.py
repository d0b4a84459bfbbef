"""The product's URLs plus `/bench/constant`: the baseline for the web benchmark (bench/web.py).

The constant endpoint is a DRF view with the product API's defaults (JWT bearer, then session,
authentication; IsAuthenticated), so it costs what any authenticated API call must cost
(middleware, DRF, the token check and its user lookup) and nothing else.
"""

from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.response import Response

from demucs_service.urls import handler404, handler500
from demucs_service.urls import urlpatterns as product_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]


@api_view(["GET"])
def constant(request):
    return Response({"ok": True})


# Last, so resolving it walks past every product pattern: no head start over the product's endpoints.
urlpatterns = [*product_urlpatterns, path("bench/constant", constant, name="bench-constant")]
