from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import Http404
from django.urls import reverse

from accounts.social.services import social_user_create


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """allauth's, with three changes: providers come from the environment only, an unconfigured
    one is a 404, and a first social login makes its account through the sign-up service."""

    def list_apps(self, request, provider=None, client_id=None):
        # settings.SOCIALACCOUNT_PROVIDERS (GITHUB_CLIENT_ID...) only: an app added in the
        # database would offer a provider the operator did not configure.
        return [app for app in super().list_apps(request, provider, client_id) if app.pk is None]

    def get_app(self, request, provider, client_id=None):
        # allauth raises SocialApp.DoesNotExist (a 500) for a provider without an app: here its
        # URLs do not exist, as its buttons do not.
        if not self.list_apps(request, provider=provider, client_id=client_id):
            raise Http404("This sign-in provider is not configured.")
        return super().get_app(request, provider, client_id)

    def save_user(self, request, sociallogin, form=None):
        user = sociallogin.user
        user.set_unusable_password()
        account_adapter = get_account_adapter(request)
        if form is not None:
            # The social sign-up page (a taken username, or no address from the provider).
            account_adapter.save_user(request, user, form, commit=False)
        else:
            account_adapter.populate_username(request, user)
        return social_user_create(request=request, sociallogin=sociallogin)

    def get_connect_redirect_url(self, request, socialaccount) -> str:
        return reverse("profile")
