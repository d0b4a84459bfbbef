from django.urls import path

from webhooks import api, views

urlpatterns = [
    path("webhooks/", views.webhooks_page, name="webhooks"),
    path("webhooks/<uuid:endpoint_id>/delete/", views.endpoint_delete, name="webhook-delete"),
    path("webhooks/<uuid:endpoint_id>/rotate/", views.endpoint_rotate, name="webhook-rotate"),
    path("webhooks/<uuid:endpoint_id>/enable/", views.endpoint_enable, name="webhook-enable"),
    path("webhooks/deliveries/<uuid:delivery_id>/resend/", views.delivery_resend, name="webhook-resend"),
]

api_urlpatterns = [
    path("webhooks", api.endpoints, name="api-webhooks"),
    path("webhooks/deliveries", api.DeliveryListView.as_view(), name="api-webhook-deliveries"),
    path("webhooks/deliveries/<uuid:delivery_id>/resend", api.delivery_resend, name="api-webhook-resend"),
    path("webhooks/<uuid:endpoint_id>", api.endpoint, name="api-webhook"),
    path("webhooks/<uuid:endpoint_id>/rotate-secret", api.endpoint_rotate_secret, name="api-webhook-rotate"),
    path("webhooks/<uuid:endpoint_id>/enable", api.endpoint_enable, name="api-webhook-enable"),
]
