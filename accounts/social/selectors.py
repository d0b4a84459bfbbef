from dataclasses import dataclass
from urllib.parse import urlsplit

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialAccount
from allauth.socialaccount.providers import registry
from django.conf import settings


@dataclass(frozen=True)
class Connection:
    id: int
    provider: str  # GitHub, Google
    name: str  # the account there: a GitHub login, a Google address


def social_connection_list(*, user) -> list[Connection]:
    """The user's connected accounts, named from what the provider said (no call to it, and
    none to its configuration: a provider turned off since still lists its connections)."""
    connections = []
    for account in SocialAccount.objects.filter(user_id=user.pk).order_by("provider", "pk"):
        provider_class = registry.get_class(account.provider)
        data = account.extra_data or {}
        connections.append(
            Connection(
                id=account.pk,
                provider=provider_class.name if provider_class else account.provider,
                name=data.get("login") or data.get("email") or account.uid,
            )
        )
    return connections


def social_provider_list(*, request) -> list:
    """The configured providers (allauth's Provider objects, for their login URLs)."""
    return get_adapter(request).list_providers(request)


def social_login_origins() -> tuple[str, ...]:
    """The origins of the configured providers' authorize pages, where a login form's redirect
    goes (the Content-Security-Policy's form-action must allow them)."""
    origins = []
    for provider_id, config in getattr(settings, "SOCIALACCOUNT_PROVIDERS", {}).items():
        provider_class = registry.get_class(provider_id)
        if not config.get("APPS") or provider_class is None:
            continue
        url = urlsplit(provider_class.oauth2_adapter_class(request=None).authorize_url)
        origins.append(f"{url.scheme}://{url.netloc}")
    return tuple(sorted(set(origins)))
