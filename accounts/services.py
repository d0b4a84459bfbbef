from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from credits.services import credits_grant_signup_bonus


def user_find_clashes(*, email: str, username: str) -> dict[str, str]:
    """Field errors for an email or username already taken, in any letter case."""
    users = get_user_model().objects
    errors = {}
    if users.filter(email__iexact=email).exists():
        errors["email"] = "An account with this email address already exists."
    if users.filter(username__iexact=username).exists():
        errors["username"] = "This username is already taken."
    return errors


def user_save_new(*, user):
    """Save an unsaved user and grant the signup bonus: every way of making an account ends here."""
    user.email = get_user_model().objects.normalize_email(user.email).lower()
    with transaction.atomic():
        user.save()
        credits_grant_signup_bonus(user=user)
    user.refresh_from_db(fields=["credits"])
    return user


def user_create(*, email: str, username: str, password: str):
    user = get_user_model()(email=email, username=username)
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password": error.messages}) from error
    user.set_password(password)
    clashes = user_find_clashes(email=email, username=username)
    if clashes:
        raise ValidationError(clashes)
    try:
        return user_save_new(user=user)
    except IntegrityError as error:
        # A concurrent sign-up took the name between the check and the insert.
        clashes = user_find_clashes(email=email, username=username)
        raise ValidationError(clashes or "Account could not be created.") from error
