"""Reads about accounts that more than one app needs."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists
from django.db.models.functions import TruncDate
from django.shortcuts import get_object_or_404
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.models import RevokedToken, UserAPIKey
from credits.models import CreditTransaction


def user_email_verified(*, user) -> bool:
    """Whether the user has confirmed an email address (allauth's EmailAddress, verified)."""
    if not getattr(user, "pk", None):
        return False
    return EmailAddress.objects.filter(user_id=user.pk, verified=True).exists()


def user_needs_email_verification(*, user) -> bool:
    """True while EMAIL_VERIFICATION is mandatory and the user has no verified address: such
    accounts can log in and see their balance but cannot upload."""
    return settings.EMAIL_VERIFICATION == "mandatory" and not user_email_verified(user=user)


def user_has_signup_bonus(*, user) -> bool:
    return CreditTransaction.objects.filter(user_id=user.pk, kind=CreditTransaction.Kind.SIGNUP_BONUS).exists()


def user_signup_bonus_pending(*, user) -> Decimal | None:
    """The welcome credits this account gets once it verifies its address, or None: verified
    already, bonus received, or no verification (EMAIL_VERIFICATION=none grants at sign-up).
    Another account of the same mailbox may have had them; the confirmation then says so."""
    if settings.EMAIL_VERIFICATION == "none" or settings.SIGNUP_BONUS_CREDITS <= 0 or not getattr(user, "pk", None):
        return None
    if user_email_verified(user=user) or user_has_signup_bonus(user=user):
        return None
    return settings.SIGNUP_BONUS_CREDITS


def user_for_token(*, user_id, jti: str):
    """The account an API token names, with `token_revoked`: whether that token was logged out.
    One query, as every API request makes it; None for an account that is gone."""
    revoked = RevokedToken.objects.filter(jti=jti)
    users = get_user_model().objects.annotate(token_revoked=Exists(revoked))
    return users.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()


@dataclass(frozen=True)
class SignupStatistics:
    per_day: list[int]  # accounts created on each day asked about
    users_total: int  # all accounts

    @property
    def in_period(self) -> int:
        return sum(self.per_day)


def signup_statistics(*, days: list[date]) -> SignupStatistics:
    """Sign-ups on each of `days` (consecutive calendar days in TIME_ZONE, oldest first) and the
    number of accounts, in two queries whatever their number."""
    index = {day: n for n, day in enumerate(days)}
    per_day = [0] * len(days)
    users = get_user_model().objects
    rows = (
        users.filter(date_joined__date__gte=days[0])
        .annotate(day=TruncDate("date_joined"))
        .values("day")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for row in rows:
        if row["day"] in index:
            per_day[index[row["day"]]] = row["count"]
    return SignupStatistics(per_day=per_day, users_total=users.count())


def api_key_list_for_user(*, user):
    """The user's keys not revoked (expired ones included, marked by their expiry), newest first."""
    return UserAPIKey.objects.filter(user=user, revoked=False).order_by("-created", "-id")


def api_key_get_for_user(*, user, key_id) -> UserAPIKey:
    """The user's key with this id; Http404 for anyone else's, as for jobs."""
    return get_object_or_404(UserAPIKey, pk=key_id, user=user)
