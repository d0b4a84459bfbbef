"""django-q2 entry points of the accounts app, scheduled on the maintenance cluster."""

from accounts import services


def revoked_tokens_purge() -> int:
    return services.revoked_tokens_purge()
