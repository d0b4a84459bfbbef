"""Failed logins are counted by allauth's `login_failed` rate limit (ACCOUNT_RATE_LIMITS): per
client address, and per key, which is the account and the client address together. Counting per
account alone would let anyone lock the owner out with a few wrong passwords; this way only the
address that fails is throttled. Used by the login page and POST /api/auth/login alike."""

from allauth.account import app_settings as allauth_settings
from allauth.core.internal.ratelimit import get_ip, parse_rates
from django.contrib.auth import get_user_model
from django.db.models import Q

TOO_MANY_LOGIN_ATTEMPTS = "too_many_login_attempts"  # allauth's error code


def login_failures_key(*, request, login: str) -> str:
    """The per-key part of the count: one account, named by email or username in any case,
    from one client address (allauth's: behind NUM_PROXIES proxies, from X-Forwarded-For)."""
    name = login.strip().lower()
    user_id = None
    if name and "\x00" not in name:  # no account name holds NUL, and PostgreSQL refuses it
        users = get_user_model().objects.filter(Q(email__iexact=name) | Q(username__iexact=name))
        user_id = users.values_list("pk", flat=True).first()
    account = f"user:{user_id}" if user_id else f"name:{name}"
    return f"{account}|{get_ip(request)}"


def login_retry_after_seconds(action: str = "login_failed") -> int:
    """The longest window of allauth's limits on `action`: the most a throttled client waits."""
    return int(max((rate.duration for rate in parse_rates(allauth_settings.RATE_LIMITS.get(action))), default=60))
