import factory

from accounts.models import User
from accounts.services import user_save_new

PASSWORD = "a-long-test-password-42"


class UserFactory(factory.django.DjangoModelFactory):
    """Users made the way the product makes them: through user_save_new, so each
    starts with its signup bonus in the ledger."""

    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class, *args, password, **kwargs):
        user = model_class(*args, **kwargs)
        user.set_password(password)
        return user_save_new(user=user)
