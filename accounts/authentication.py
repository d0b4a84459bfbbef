"""Bearer tokens that can be ended before they expire: by a password change, reset or
deactivation (the token's version is older than the account's) or by logging it out."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from accounts.selectors import token_is_revoked
from accounts.tokens import token_version_of

TOKEN_ENDED = "This token has ended (logged out, or the password changed). Log in again."


class RevocableJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        if token_version_of(validated_token) != user.token_version or token_is_revoked(token=validated_token):
            raise AuthenticationFailed(TOKEN_ENDED, code="token_revoked")
        return user


class RevocableJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class, for this subclass."""

    target_class = RevocableJWTAuthentication
