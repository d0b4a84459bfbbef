import factory
from allauth.account.models import EmailAddress

from accounts.models import User
from accounts.services import email_address_verify, user_save_new

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
