from django import template

from accounts.selectors import user_needs_email_verification, user_signup_bonus_pending

register = template.Library()


@register.simple_tag
def needs_email_verification(user) -> bool:
    """For the banner in base.html: a signed-in user who must verify before uploading."""
    return bool(getattr(user, "is_authenticated", False)) and user_needs_email_verification(user=user)


@register.simple_tag
def signup_bonus_pending(user):
    """The free credits a signed-in user gets once the address is verified, or None."""
    return user_signup_bonus_pending(user=user) if getattr(user, "is_authenticated", False) else None
