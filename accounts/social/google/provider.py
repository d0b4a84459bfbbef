from allauth.socialaccount.providers.google import provider as allauth_google

from accounts.social.google.views import GoogleOAuth2Adapter
from accounts.social.limits import ThrottledLoginStart


class GoogleProvider(ThrottledLoginStart, allauth_google.GoogleProvider):
    oauth2_adapter_class = GoogleOAuth2Adapter
    # Sign in with Google's one-tap ID tokens (allauth's login_by_token) is not offered: only the
    # redirect flow, whose callback this site checks.
    supports_token_authentication = False


provider_classes = [GoogleProvider]
