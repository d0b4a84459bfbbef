from allauth.account.models import EmailAddress
from django.db import transaction

from accounts.services import email_address_verify, user_save_new
from credits.services import LedgerPosting


def social_user_create(*, request, sociallogin):
    """A first social login's account, saved through the sign-up service (user_save_new) with
    the provider's account and its addresses, verified as the provider says. The signup bonus
    follows at the login itself (social_login_addresses_verify), as for every way in."""
    user = sociallogin.user
    with transaction.atomic():
        user_save_new(user=user)
        # allauth's: the SocialAccount row and an EmailAddress for each of the provider's addresses.
        sociallogin.save(request)
    return user


def social_login_addresses_verify(*, user, sociallogin) -> LedgerPosting | None:
    """At each social login (the first included): the addresses of `user` that this provider
    says are verified become verified here too, through email_address_verify, which grants the
    signup bonus once per mailbox and account. Returns the bonus if one was granted now."""
    provider_verified = {address.email.lower() for address in sociallogin.email_addresses if address.verified}
    granted = None
    for address in EmailAddress.objects.filter(user_id=user.pk).order_by("-primary", "pk"):
        if address.email.lower() in provider_verified:
            bonus = email_address_verify(address=address).bonus
            granted = granted or bonus
    return granted
