from django import template

from accounts.selectors import user_needs_email_verification

register = template.Library()


@register.simple_tag
def needs_email_verification(user) -> bool:
    """For the banner in base.html: a signed-in user who must verify before uploading."""
    return bool(getattr(user, "is_authenticated", False)) and user_needs_email_verification(user=user)
