from django.urls import path

from accounts import api, views

urlpatterns = [
    # Before allauth's own, which it wraps (429 with Retry-After when throttled).
    path("login/", views.login),
    path("profile/", views.profile, name="profile"),
    path("verify-email/resend/", views.verify_email_resend, name="verify-email-resend"),
    path("connections/<int:connection_id>/remove/", views.connection_remove, name="connection-remove"),
    path("keys/", views.api_keys, name="api-keys-page"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
]

api_urlpatterns = [
    path("register", api.register, name="api-register"),
    path("login", api.login, name="api-login"),
    path("logout", api.logout, name="api-logout"),
    path("me", api.me, name="api-me"),
    path("verify-email/resend", api.verify_email_resend, name="api-verify-email-resend"),
    path("password-reset", api.password_reset, name="api-password-reset"),
    path("password-reset/confirm", api.password_reset_confirm, name="api-password-reset-confirm"),
]

keys_api_urlpatterns = [
    path("keys", api.api_keys, name="api-keys"),
    path("keys/<int:key_id>", api.api_key_delete, name="api-key"),
]
