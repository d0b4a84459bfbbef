import logging

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from accounts.authentication import RevocableJWTAuthentication
from accounts.selectors import (
    api_key_get_for_user,
    api_key_list_for_user,
    user_email_verified,
    user_signup_bonus_pending,
)
from accounts.services import (
    LoginThrottled,
    TooManyAPIKeys,
    VerificationMail,
    api_key_create,
    api_key_revoke,
    email_verification_send,
    password_reset_complete,
    password_reset_request,
    token_revoke,
    user_authenticate,
    user_create,
    user_update_preferences,
)
from accounts.throttles import (
    PasswordResetAccountThrottle,
    PasswordResetIPThrottle,
    RegisterAccountThrottle,
    RegisterIPThrottle,
)
from accounts.tokens import access_token_issue
from credits.api import SubscriptionOutput
from credits.subscriptions import subscription_latest

logger = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Unable to log in with the provided credentials."


class UserOutput(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    username = serializers.CharField()
    credits = serializers.DecimalField(max_digits=10, decimal_places=2)
    date_joined = serializers.DateTimeField()
    email_verified = serializers.SerializerMethodField(help_text="Uploads need a verified email when required")
    email_on_job_finished = serializers.BooleanField(help_text="Email me when a separation completes or fails")
    signup_bonus_pending = serializers.SerializerMethodField(
        help_text="Free credits granted once the email address is verified (one welcome bonus per address); "
        "null when none are waiting"
    )

    subscription = serializers.SerializerMethodField(
        help_text="The plan covering jobs now (else the latest one): plan, status, current_period_end; null if none"
    )

    @extend_schema_field(SubscriptionOutput(allow_null=True))
    def get_subscription(self, user) -> dict | None:
        subscription = subscription_latest(user_id=user.pk)
        return None if subscription is None else SubscriptionOutput(subscription).data

    def get_email_verified(self, user) -> bool:
        return user_email_verified(user=user)

    @extend_schema_field(serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True))
    def get_signup_bonus_pending(self, user) -> str | None:
        pending = user_signup_bonus_pending(user=user)
        return None if pending is None else f"{pending:.2f}"


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField(default="bearer")


class RegisterOutput(TokenOutput):
    user = UserOutput()


def _token_for(user) -> dict:
    return {"access_token": access_token_issue(user=user), "token_type": "bearer"}


class RegisterInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    username = serializers.RegexField(
        r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Use only letters, digits and @/./+/-/_ characters."},
    )
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})


@extend_schema(request=RegisterInput, responses={201: RegisterOutput}, tags=["auth"])
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([RegisterIPThrottle, RegisterAccountThrottle])
def register(request):
    """Create an account and return an access token. A verification link is mailed to the address;
    following it grants the signup bonus (once per address) and, when EMAIL_VERIFICATION is
    mandatory, allows uploads. An address or username already taken is named (400)."""
    data = RegisterInput(data=request.data)
    data.is_valid(raise_exception=True)
    user = user_create(**data.validated_data)
    try:
        email_verification_send(request=request, user=user, signup=True)
    except Exception:  # the account stands; the person can ask for the mail again
        logger.exception("Could not send the verification mail to user %s", user.pk)
    return Response(
        {**_token_for(user), "user": UserOutput(user).data},
        status=status.HTTP_201_CREATED,
    )


class LoginInput(serializers.Serializer):
    email = serializers.CharField(required=False, max_length=254, help_text="Email or username")
    username = serializers.CharField(required=False, max_length=254, help_text="Username or email")
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})

    def validate(self, attrs):
        if not attrs.get("email") and not attrs.get("username"):
            raise serializers.ValidationError({"email": "Give your email address or your username."})
        return attrs


@extend_schema(
    request=LoginInput,
    responses={
        200: TokenOutput,
        401: OpenApiResponse(description="Wrong credentials"),
        429: OpenApiResponse(description="Too many failed logins from this address (Retry-After)"),
    },
    tags=["auth"],
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([])
def login(request):
    """Exchange an email or username and a password for an access token. Failed logins are
    throttled per client address and per account from one address, as on the login page."""
    data = LoginInput(data=request.data)
    data.is_valid(raise_exception=True)
    identifier = data.validated_data.get("email") or data.validated_data["username"]
    try:
        user = user_authenticate(request=request, login=identifier, password=data.validated_data["password"])
    except LoginThrottled as throttled:
        raise exceptions.Throttled(wait=throttled.retry_after) from throttled
    if user is None:
        return Response(
            {"detail": INVALID_CREDENTIALS},
            status=status.HTTP_401_UNAUTHORIZED,
            headers={"WWW-Authenticate": 'Bearer realm="api"'},
        )
    return Response(_token_for(user))


@extend_schema(
    request=None,
    responses={
        204: OpenApiResponse(description="The token is logged out"),
        401: OpenApiResponse(description="No token, or one already logged out, expired or ended"),
    },
    tags=["auth"],
)
@api_view(["POST"])
@authentication_classes([RevocableJWTAuthentication])
def logout(request):
    """End the bearer token this request is sent with (other tokens of the account keep working;
    changing the password ends them all)."""
    token_revoke(token=request.auth)
    return Response(status=status.HTTP_204_NO_CONTENT)


class PreferencesInput(serializers.Serializer):
    email_on_job_finished = serializers.BooleanField()


@extend_schema(methods=["GET"], responses={200: UserOutput}, tags=["auth"])
@extend_schema(methods=["PATCH"], request=PreferencesInput, responses={200: UserOutput}, tags=["auth"])
@api_view(["GET", "PATCH"])
def me(request):
    """The signed-in user, with the current balance. PATCH changes the email preferences."""
    if request.method == "PATCH":
        data = PreferencesInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        if data.validated_data:
            user_update_preferences(user=request.user, **data.validated_data)
    return Response(UserOutput(request.user).data)


class DetailOutput(serializers.Serializer):
    detail = serializers.CharField()


VERIFICATION_ANSWERS = {
    VerificationMail.SENT: "We sent you a new verification link. Follow it to verify your email address.",
    VerificationMail.ALREADY_VERIFIED: "Your email address is already verified.",
    VerificationMail.RECENTLY_SENT: "We sent you a verification link a moment ago; it still works. "
    "Check your inbox (and spam folder), or ask again in a few minutes.",
}


@extend_schema(request=None, responses={200: DetailOutput}, tags=["auth"])
@api_view(["POST"])
def verify_email_resend(request):
    """Mail the verification link again."""
    sent = email_verification_send(request=request, user=request.user)
    return Response({"detail": VERIFICATION_ANSWERS[sent], "status": sent.value})


PASSWORD_RESET_SENT = (
    "If an account uses this email address, we sent it a link to set a new password. The link works once."
)


class PasswordResetInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)


@extend_schema(request=PasswordResetInput, responses={202: DetailOutput}, tags=["auth"])
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([PasswordResetIPThrottle, PasswordResetAccountThrottle])
def password_reset(request):
    """Mail a password reset link. The answer is the same whether or not the account exists."""
    data = PasswordResetInput(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        password_reset_request(request=request, email=data.validated_data["email"])
    except Exception:  # a mail failure must not tell an account exists
        logger.exception("Could not send a password reset mail")
    return Response({"detail": PASSWORD_RESET_SENT}, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmInput(serializers.Serializer):
    uid = serializers.CharField(max_length=64, help_text="The mailed link ends in /<uid>-<token>/")
    token = serializers.CharField(max_length=256)
    new_password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})


@extend_schema(
    request=PasswordResetConfirmInput,
    responses={200: DetailOutput, 400: OpenApiResponse(description="Invalid or used token, or a weak password")},
    tags=["auth"],
)
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([PasswordResetIPThrottle])
def password_reset_confirm(request):
    """Set a new password with the uid and token from the mailed link. Each link works once."""
    data = PasswordResetConfirmInput(data=request.data)
    data.is_valid(raise_exception=True)
    password_reset_complete(request=request, **data.validated_data)
    return Response({"detail": "Your password has been changed. Log in with the new one."})


class APIKeyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to tell keys apart; not secret")
    created_at = serializers.DateTimeField(source="created")
    expires_at = serializers.DateTimeField(source="expiry_date", allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute")


class APIKeyCreatedOutput(APIKeyOutput):
    key = serializers.CharField(help_text="The whole key, shown this once: send it as `Authorization: Api-Key <key>`")


class APIKeyInput(serializers.Serializer):
    name = serializers.CharField(max_length=50, help_text="What the key is for, to recognise it later")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Optional; none: never")

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Give a time in the future.")
        return value


# Keys are made and revoked by a person: a key cannot make or revoke keys.
PERSON_AUTHENTICATION = [RevocableJWTAuthentication, SessionAuthentication]


@extend_schema(methods=["GET"], responses={200: APIKeyOutput(many=True)}, tags=["keys"])
@extend_schema(
    methods=["POST"],
    request=APIKeyInput,
    responses={
        201: APIKeyCreatedOutput,
        400: OpenApiResponse(description="No name, an expiry in the past, or too many keys"),
        401: OpenApiResponse(description="Not logged in (an API key cannot make keys)"),
    },
    tags=["keys"],
)
@api_view(["GET", "POST"])
@authentication_classes(PERSON_AUTHENTICATION)
def api_keys(request):
    """Your API keys (GET), or a new one (POST `{name, expires_at?}`): the whole key is in this
    answer only. Needs a bearer token or the site's session, not an API key."""
    if request.method == "GET":
        return Response(APIKeyOutput(api_key_list_for_user(user=request.user), many=True).data)
    data = APIKeyInput(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        api_key, key = api_key_create(user=request.user, **data.validated_data)
    except TooManyAPIKeys as refused:
        raise exceptions.ValidationError({"detail": str(refused)}) from refused
    api_key.key = key  # on this answer's object only; the database has the hash
    return Response(APIKeyCreatedOutput(api_key).data, status=status.HTTP_201_CREATED)


@extend_schema(
    request=None,
    responses={204: OpenApiResponse(description="Revoked"), 404: OpenApiResponse(description="No such key of yours")},
    tags=["keys"],
)
@api_view(["DELETE"])
@authentication_classes(PERSON_AUTHENTICATION)
def api_key_delete(request, key_id):
    """Revoke a key: requests with it answer 401 from now on."""
    api_key_revoke(api_key=api_key_get_for_user(user=request.user, key_id=key_id))
    return Response(status=status.HTTP_204_NO_CONTENT)
