import enum
import logging
from dataclasses import dataclass
from datetime import timedelta

from allauth.account import signals as allauth_signals
from allauth.account.adapter import get_adapter
from allauth.account.forms import ResetPasswordForm, default_token_generator
from allauth.account.models import EmailAddress
from allauth.account.utils import url_str_to_user_pk
from allauth.core import ratelimit
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.email_identity import email_normalise
from accounts.login_limits import TOO_MANY_LOGIN_ATTEMPTS, login_retry_after_seconds
from accounts.models import RevokedToken, UserAPIKey
from credits.services import LedgerPosting, credits_grant_signup_bonus

logger = logging.getLogger(__name__)

INVALID_RESET_LINK = "This password reset link is invalid or has already been used. Ask for a new one."


def user_find_clashes(*, email: str, username: str) -> dict[str, str]:
    """Field errors for an email or username already taken, in any letter case."""
    users = get_user_model().objects
    errors = {}
    if users.filter(email__iexact=email).exists():
        errors["email"] = "An account with this email address already exists."
    if users.filter(username__iexact=username).exists():
        errors["username"] = "This username is already taken."
    return errors


def user_save_new(*, user):
    """Save an unsaved user: every way of making an account ends here. The signup bonus waits for
    a verified address (email_address_verify), except with EMAIL_VERIFICATION=none, where there
    is no verification and it is granted now, still once per mailbox."""
    user.email = get_user_model().objects.normalize_email(user.email).lower()
    with transaction.atomic():
        user.save()
        if settings.EMAIL_VERIFICATION == "none":
            credits_grant_signup_bonus(user=user, normalised_email=email_normalise(user.email))
    user.refresh_from_db(fields=["credits"])
    return user


def user_create(*, email: str, username: str, password: str):
    user = get_user_model()(email=email, username=username)
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password": error.messages}) from error
    user.set_password(password)
    clashes = user_find_clashes(email=email, username=username)
    if clashes:
        raise ValidationError(clashes)
    try:
        return user_save_new(user=user)
    except IntegrityError as error:
        # A concurrent sign-up took the name between the check and the insert.
        clashes = user_find_clashes(email=email, username=username)
        raise ValidationError(clashes or "Account could not be created.") from error


class LoginThrottled(Exception):
    def __init__(self, *, retry_after: int):
        super().__init__(f"Too many login attempts; retry in {retry_after} s")
        self.retry_after = retry_after


def user_authenticate(*, request, login: str, password: str):
    """The user with this email or username and password, or None; through allauth, so the API
    and the login page share one count of failed logins (accounts.login_limits). Raises
    LoginThrottled when this client has failed too often, whatever the password."""
    if not ratelimit.consume(request, action="login"):  # every attempt, per address, as on the page
        raise LoginThrottled(retry_after=login_retry_after_seconds("login"))
    try:
        user = get_adapter(request).authenticate(request, username=login, password=password)
    except ValidationError as error:
        if error.code == TOO_MANY_LOGIN_ATTEMPTS:
            raise LoginThrottled(retry_after=login_retry_after_seconds()) from error
        raise
    # allauth hands back an inactive account with the right password (to show its page); not here.
    return user if user is not None and user.is_active else None


# --- email verification (allauth's EmailAddress and confirmation mails) ---------------------


class VerificationMail(enum.Enum):
    SENT = "sent"
    ALREADY_VERIFIED = "already_verified"
    RECENTLY_SENT = "recently_sent"  # allauth's cooldown: the earlier mail's link still works


def _email_address_for(*, user) -> EmailAddress:
    """The address to verify: the primary one, else the one on the user, created if missing
    (accounts made by the API, the admin or createsuperuser have no EmailAddress yet)."""
    addresses = EmailAddress.objects.filter(user_id=user.pk)
    address = addresses.filter(primary=True).first() or addresses.filter(email__iexact=user.email).first()
    if address is None:
        address, _ = EmailAddress.objects.get_or_create(
            user=user, email=user.email.lower(), defaults={"primary": not addresses.exists(), "verified": False}
        )
    return address


def email_verification_send(*, request, user, signup: bool = False) -> VerificationMail:
    """Send allauth's confirmation mail (the same link and templates as the sign-up page) unless
    the user is verified already or one was sent within allauth's cooldown."""
    if EmailAddress.objects.filter(user_id=user.pk, verified=True).exists():
        return VerificationMail.ALREADY_VERIFIED
    address = _email_address_for(user=user)
    if not ratelimit.consume(request, action="confirm_email", key=address.email.lower()):
        return VerificationMail.RECENTLY_SENT
    address.send_confirmation(request, signup=signup)
    return VerificationMail.SENT


@dataclass(frozen=True)
class AddressVerification:
    verified: bool  # False: another account has this address verified already
    bonus: LedgerPosting | None  # None: this account or this mailbox had its bonus already


def email_address_verify(*, address: EmailAddress) -> AddressVerification:
    """Every way an address gets verified ends here (the mailed link through the adapter, the
    admin, a provider-verified address at a social login, the test factories): it marks the
    address verified if it is not yet and grants the signup bonus, once per normalised address
    (name+tag@ and, at gmail.com, dotted spellings are one mailbox) and once per account."""
    with transaction.atomic():
        if not address.verified:
            if not address.set_verified(commit=False):
                return AddressVerification(verified=False, bonus=None)
            address.save(update_fields=["verified"])
        bonus = credits_grant_signup_bonus(user=address.user, normalised_email=email_normalise(address.email))
    return AddressVerification(verified=True, bonus=bonus)


# --- password reset (allauth's tokens, so the mailed link opens allauth's page) --------------


def password_reset_request(*, request, email: str) -> None:
    """Mail a reset link to the accounts with this address; nothing at all for an unknown one,
    and the caller answers the same either way (no account enumeration)."""
    form = ResetPasswordForm(data={"email": email})
    if form.is_valid() and form.users:
        form.save(request)


def _user_from_reset_token(*, uid: str, token: str):
    try:
        user = get_user_model().objects.get(pk=url_str_to_user_pk(uid), is_active=True)
    except (ValueError, TypeError, OverflowError, get_user_model().DoesNotExist):
        return None
    return user if default_token_generator.check_token(user, token) else None


def password_reset_complete(*, request, uid: str, token: str, new_password: str):
    """Set a new password from the mailed link's uid and token. The token hashes the current
    password, so it stops working once used."""
    user = _user_from_reset_token(uid=uid, token=token)
    if user is None:
        raise ValidationError({"token": [INVALID_RESET_LINK]})
    try:
        validate_password(new_password, user)
    except ValidationError as error:
        raise ValidationError({"new_password": error.messages}) from error
    get_adapter(request).set_password(user, new_password)
    allauth_signals.password_reset.send(sender=user.__class__, request=request, user=user)
    return user


# --- API tokens: a password change or reset and deactivation end them all (accounts.models.User
# .token_version); logging out ends one, listed here until it would have expired anyway -----------


def token_revoke(*, token) -> None:
    """Log out one validated API token."""
    RevokedToken.objects.get_or_create(
        jti=token[jwt_settings.JTI_CLAIM], defaults={"expires_at": datetime_from_epoch(token["exp"])}
    )


def revoked_tokens_purge(*, now=None) -> int:
    """Forget logged-out tokens that have expired (they are refused for that now); returns how many."""
    deleted, _ = RevokedToken.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


# --- notification preferences --------------------------------------------------------------


def user_update_preferences(*, user, email_on_job_finished: bool):
    user.email_on_job_finished = email_on_job_finished
    user.save(update_fields=["email_on_job_finished"])
    return user


# API keys. Creating and revoking need a person (session or bearer token): the views say so.
API_KEY_TOUCH_SECONDS = 60
MAX_API_KEYS_PER_USER = 50


class TooManyAPIKeys(Exception):
    pass


def api_key_create(*, user, name: str, expires_at=None) -> tuple[UserAPIKey, str]:
    """A new key for `user`: the row (hashed) and the whole key, which is shown this once. At most
    MAX_API_KEYS_PER_USER working keys each (TooManyAPIKeys), so nobody fills the table."""
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # one creation at a time per user
        if UserAPIKey.objects.filter(user=user, revoked=False).count() >= MAX_API_KEYS_PER_USER:
            raise TooManyAPIKeys(
                f"You have {MAX_API_KEYS_PER_USER} API keys already; revoke one you no longer use first."
            )
        return UserAPIKey.objects.create_key(user=user, name=name, expiry_date=expires_at)


def api_key_revoke(*, api_key: UserAPIKey) -> UserAPIKey:
    """Revoke a key for good; requests with it answer 401 from now on. Revoking twice is harmless."""
    UserAPIKey.objects.filter(pk=api_key.pk).update(revoked=True)
    api_key.revoked = True
    api_key._initial_revoked = True
    return api_key


def api_key_authenticate(*, key: str) -> UserAPIKey | None:
    """The usable key (not revoked, not expired, of an active account) that `key` is, or None."""
    try:
        api_key = UserAPIKey.objects.get_from_key(key)
    except UserAPIKey.DoesNotExist:
        return None
    if api_key.has_expired or not api_key.user.is_active:
        return None
    api_key_touch(api_key=api_key)
    return api_key


def api_key_touch(*, api_key: UserAPIKey) -> None:
    """Record that the key was used: at most one write a minute per key, not one per request."""
    now = timezone.now()
    stale = now - timedelta(seconds=API_KEY_TOUCH_SECONDS)
    if api_key.last_used_at is not None and api_key.last_used_at > stale:
        return
    UserAPIKey.objects.filter(pk=api_key.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)).update(
        last_used_at=now
    )
    api_key.last_used_at = now
