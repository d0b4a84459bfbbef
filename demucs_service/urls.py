from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import urls as accounts_urls
from credits import urls as credits_urls
from demucs_service import views
from monitoring import views as monitoring_views
from separation import urls as separation_urls
from webhooks import urls as webhooks_urls

api_patterns = [
    path("", views.api_root, name="api-root"),
    path("auth/", include(accounts_urls.api_urlpatterns)),
    path("", include(accounts_urls.keys_api_urlpatterns)),
    path("credits/", include(credits_urls.api_urlpatterns)),
    path("payments/", include(credits_urls.payments_api_urlpatterns)),
    path("", include(credits_urls.subscriptions_api_urlpatterns)),
    path("", include(separation_urls.api_urlpatterns)),
    path("", include(webhooks_urls.api_urlpatterns)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts_urls.urlpatterns)),
    path("accounts/", include(webhooks_urls.urlpatterns)),
    path("accounts/", include("allauth.urls")),
    path("credits/", include(credits_urls.urlpatterns)),
    path("", include(separation_urls.urlpatterns)),
    path("api/", include(api_patterns)),
]

handler404 = "demucs_service.views.not_found"
handler500 = "demucs_service.views.server_failure"
