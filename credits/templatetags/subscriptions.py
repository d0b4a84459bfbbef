"""{% subscription_for user as subscription %}: the user's covering (else newest) subscription,
for pages outside the credits app (the account page)."""

from django import template

from credits.subscriptions import subscription_latest

register = template.Library()


@register.simple_tag
def subscription_for(user):
    return subscription_latest(user_id=user.pk) if user.is_authenticated else None
