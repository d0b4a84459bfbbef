from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models.functions import Lower


class UserManager(DjangoUserManager):
    def _create_user(self, username, email, password, **extra_fields):
        # createsuperuser and create_user go through the same path as sign-up,
        # so every account starts with its signup bonus in the ledger.
        from accounts.services import user_save_new

        return user_save_new(user=self._create_user_object(username, email, password, **extra_fields))


class User(AbstractUser):
    email = models.EmailField("email address")
    # A cached balance: the ledger (credits.CreditTransaction) is the truth, and
    # only credits.services writes this field.
    credits = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"), editable=False)
    email_on_job_finished = models.BooleanField(
        "email me when a separation finishes",
        default=True,
        help_text="A short email when a job completes or fails (with its refund).",
    )

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    def save(self, *args, **kwargs):
        # A full save of a loaded user (password change, admin edit, profile form) must not
        # write back the balance it read earlier: only the ledger service changes credits.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name for field in self._meta.concrete_fields if not field.primary_key and field.name != "credits"
            ]
        super().save(*args, **kwargs)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
            models.CheckConstraint(condition=models.Q(credits__gte=0), name="user_credits_not_negative"),
        ]
