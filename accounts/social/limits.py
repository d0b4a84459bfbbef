from allauth.core import ratelimit

from accounts.login_limits import login_retry_after_seconds


class ThrottledLoginStart:
    """For the providers: starting a social login counts against allauth's `login` limit for the
    client address (ACCOUNT_RATE_LIMITS, 30 a minute), as each try on the login form does. Each
    start may end in a call from this server to the provider's token endpoint, and in an account."""

    def redirect_from_request(self, request):
        refused = ratelimit.consume_or_429(request, action="login")
        if refused is not None:
            refused["Retry-After"] = str(login_retry_after_seconds("login"))
            return refused
        return super().redirect_from_request(request)
