"""Throttles for the anonymous auth endpoints: one budget per client IP, one per account name.
Logins are limited by failures instead, as on the login page (accounts.login_limits)."""

import hashlib

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
        ident = hashlib.sha256(name.strip().lower().encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


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
