"""Reads about accounts that more than one app needs."""

from allauth.account.models import EmailAddress
from django.conf import settings
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.models import RevokedToken


def user_email_verified(*, user) -> bool:
    """Whether the user has confirmed an email address (allauth's EmailAddress, verified)."""
    if not getattr(user, "pk", None):
        return False
    return EmailAddress.objects.filter(user_id=user.pk, verified=True).exists()


def user_needs_email_verification(*, user) -> bool:
    """True while EMAIL_VERIFICATION is mandatory and the user has no verified address: such
    accounts can log in and see their balance but cannot upload."""
    return settings.EMAIL_VERIFICATION == "mandatory" and not user_email_verified(user=user)


def token_is_revoked(*, token) -> bool:
    """Whether this validated API token was logged out."""
    return RevokedToken.objects.filter(jti=token.get(jwt_settings.JTI_CLAIM, "")).exists()
