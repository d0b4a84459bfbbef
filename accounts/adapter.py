from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings

from accounts.login_limits import login_failures_key
from accounts.services import user_save_new


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=False)
        if commit:
            user_save_new(user=user)
        return user

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # Subjects are rendered without the request's context processors: name the site here.
        super().send_mail(template_prefix, email, {"SITE_NAME": settings.SITE_NAME, **context})

    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        # allauth 65 keys its failed-login count (and its reset on a password reset) here, by the
        # login name alone; ours adds the client address, so nobody can lock the owner out.
        return login_failures_key(request=request, login=credentials.get("email") or credentials.get("username") or "")
