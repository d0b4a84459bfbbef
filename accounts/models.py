from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models import F
from django.db.models.functions import Lower
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager


class UserManager(DjangoUserManager):
    def _create_user(self, username, email, password, **extra_fields):
        # createsuperuser and create_user go through the same path as sign-up (the signup
        # bonus follows when the address is verified: accounts.services.email_address_verify).
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
    # Every API token carries the version it was issued under (accounts.tokens); changing the
    # password or deactivating the account moves it on, which ends every earlier token.
    token_version = models.PositiveIntegerField(default=0, editable=False)

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    def set_unusable_password(self):
        super().set_unusable_password()
        self._password_unset = True

    def _ends_tokens(self, update_fields) -> bool:
        if self._state.adding:
            return False
        # _password is what set_password() leaves for this save; Django clears it before the
        # save of a hash upgrade at login, which is not a password change.
        changed = self._password is not None or getattr(self, "_password_unset", False) or not self.is_active
        return changed and (update_fields is None or bool({"password", "is_active"} & set(update_fields)))

    def save(self, *args, **kwargs):
        ends_tokens = self._ends_tokens(kwargs.get("update_fields"))
        if ends_tokens:
            # In the database, so two changes at once both count.
            self.token_version = F("token_version") + 1
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = [*kwargs["update_fields"], "token_version"]
        # A full save of a loaded user (password change, admin edit, profile form) must not
        # write back the balance it read earlier: only the ledger service changes credits.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                field.name for field in self._meta.concrete_fields if not field.primary_key and field.name != "credits"
            ]
        super().save(*args, **kwargs)
        if ends_tokens:
            self._password_unset = False
            self.refresh_from_db(fields=["token_version"])

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            models.UniqueConstraint(Lower("username"), name="user_username_ci_unique"),
            models.CheckConstraint(condition=models.Q(credits__gte=0), name="user_credits_not_negative"),
        ]


class RevokedToken(models.Model):
    """An API token logged out before it expired (POST /api/auth/logout), refused until then;
    accounts.services.revoked_tokens_purge deletes the rows whose tokens have expired."""

    jti = models.CharField(max_length=255, primary_key=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return self.jti


class UserAPIKeyManager(BaseAPIKeyManager):
    def assign_key(self, obj):
        key = super().assign_key(obj)
        # The library's primary key is "prefix.hash"; ours is a plain number, so that the id in
        # URLs and answers (DELETE /api/keys/<id>) never carries the hash.
        obj.id = None
        return key

    def get_usable_keys(self):
        return super().get_usable_keys().select_related("user")


class UserAPIKey(AbstractAPIKey):
    """A person's key for programs (`Authorization: Api-Key <prefix>.<secret>`): stored hashed
    (djangorestframework-api-key), shown whole once, revocable, optionally expiring. It acts as
    its owner on every API endpoint a token can use, except creating and revoking keys."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="api_keys")
    # Written at most once a minute per key (accounts.services.api_key_touch), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = UserAPIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
