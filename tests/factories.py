from decimal import Decimal

import factory
from allauth.account.models import EmailAddress
from django.utils import timezone

from accounts.models import User
from accounts.services import email_address_verify, user_save_new
from credits.models import CreditTransaction, Payment
from credits.services import ledger_append

PASSWORD = "a-long-test-password-42"


class UserFactory(factory.django.DjangoModelFactory):
    """Users made the way the product makes them: saved through user_save_new, then their address
    verified through email_address_verify (as following the mailed link does), so each has a
    verified primary address and its signup bonus in the ledger. UserFactory(email_verified=False)
    is an account that has not followed its link yet (no bonus unless EMAIL_VERIFICATION=none)."""

    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class, *args, password, email_verified=True, **kwargs):
        user = model_class(*args, **kwargs)
        user.set_password(password)
        user = user_save_new(user=user)
        address = EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)
        if email_verified:
            email_address_verify(address=address)
            user.refresh_from_db(fields=["credits"])
        return user


def disputed_payment(user, *, shortfall="0", spend=True) -> Payment:
    """A credited 25-credit Stripe purchase of `user`, disputed, whose reversal left `shortfall`
    credits owed; the customer spent the whole balance first, unless spend is False (an account
    from before the ledger repaid)."""
    held = User.objects.values_list("credits", flat=True).get(pk=user.pk)
    if spend and held:
        ledger_append(user_id=user.pk, amount=-held, kind=CreditTransaction.Kind.JOB_CHARGE, description="Job")
    made = Payment.objects.count()
    return Payment.objects.create(
        provider="stripe",
        provider_session_id=f"cs_test_{user.pk}_{made}",
        payment_intent_id=f"pi_test_{user.pk}_{made}",
        user=user,
        pack_id="standard",
        credits=Decimal("25"),
        amount=Decimal("4.00"),
        currency="usd",
        status=Payment.Status.DISPUTED,
        credited_at=timezone.now(),
        credits_shortfall=Decimal(shortfall),
    )
