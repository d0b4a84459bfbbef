"""Throttles for the anonymous auth endpoints: one budget per client IP, one per account name."""

import hashlib

from django.contrib.auth import get_user_model
from django.db.models import Q
from rest_framework.throttling import SimpleRateThrottle


class _PerIPThrottle(SimpleRateThrottle):
    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class _PerAccountThrottle(SimpleRateThrottle):
    fields: tuple[str, ...] = ()

    def get_cache_key(self, request, view):
        data = request.data if isinstance(request.data, dict) else {}
        name = next((str(data[field]) for field in self.fields if data.get(field)), "")
        if not name:
            return None  # nothing to count against; validation will reject the request
        ident = hashlib.sha256(self.account(name.strip().lower()).encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def account(self, name: str) -> str:
        return name


class LoginIPThrottle(_PerIPThrottle):
    scope = "login_ip"


class LoginAccountThrottle(_PerAccountThrottle):
    scope = "login_account"
    fields = ("email", "username")

    def account(self, name: str) -> str:
        # One budget per account, whether it is named by email or by username.
        if "\x00" in name:
            return name  # no account name holds NUL, and PostgreSQL refuses it in a query
        users = get_user_model().objects.filter(Q(email__iexact=name) | Q(username__iexact=name))
        user_id = users.values_list("pk", flat=True).first()
        return f"user:{user_id}" if user_id else name


class RegisterIPThrottle(_PerIPThrottle):
    scope = "register_ip"


class RegisterAccountThrottle(_PerAccountThrottle):
    scope = "register_account"
    fields = ("email",)


class PasswordResetIPThrottle(_PerIPThrottle):
    """Both password-reset endpoints, per client IP."""

    scope = "password_reset_ip"


class PasswordResetAccountThrottle(_PerAccountThrottle):
    """Reset mails to one address, from any IP."""

    scope = "password_reset_account"
    fields = ("email",)
