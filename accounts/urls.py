from django.urls import path

from accounts import api, views

urlpatterns = [
    path("profile/", views.profile, name="profile"),
]

api_urlpatterns = [
    path("register", api.register, name="api-register"),
    path("login", api.login, name="api-login"),
    path("me", api.me, name="api-me"),
]
