from allauth.socialaccount.providers.oauth2.urls import default_urlpatterns

from accounts.social.google.provider import GoogleProvider

urlpatterns = default_urlpatterns(GoogleProvider)
