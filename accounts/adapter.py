from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings

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
