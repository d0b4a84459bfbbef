from django.conf import settings


def provider_setting(provider_id: str, name: str, default: str) -> str:
    """One of a provider's settings (SOCIALACCOUNT_PROVIDERS), read now: allauth's own providers
    read theirs once at import, which would pin them for the life of the process."""
    return getattr(settings, "SOCIALACCOUNT_PROVIDERS", {}).get(provider_id, {}).get(name) or default
