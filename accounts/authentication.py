"""Bearer tokens that can be ended before they expire: by a password change, reset or
deactivation (the token's version is older than the account's) or by logging it out."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings

from accounts.selectors import user_for_token
from accounts.tokens import token_version_of

TOKEN_ENDED = "This token has ended (logged out, or the password changed). Log in again."


class RevocableJWTAuthentication(JWTAuthentication):
    def get_user(self, validated_token):
        # simplejwt's checks, plus ours, in the one query every API request makes.
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as error:
            raise InvalidToken(_("Token contained no recognizable user identification")) from error
        user = user_for_token(user_id=user_id, jti=validated_token.get(api_settings.JTI_CLAIM, ""))
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if user.token_revoked or token_version_of(validated_token) != user.token_version:
            raise AuthenticationFailed(TOKEN_ENDED, code="token_revoked")
        return user


class RevocableJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of simplejwt's class, for this subclass."""

    target_class = RevocableJWTAuthentication
