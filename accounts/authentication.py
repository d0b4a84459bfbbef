"""Bearer tokens that can be ended before they expire: by a password change, reset or
deactivation (the token's version is older than the account's) or by logging it out. API keys
for programs, ended by revoking them, their expiry or deactivating the account."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework_api_key.permissions import KeyParser
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings

from accounts.selectors import user_for_token
from accounts.services import api_key_authenticate
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


API_KEY_REFUSED = "This API key is not valid: it was revoked, it expired, or it never existed."


class APIKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>`: the key's owner, with the key as `request.auth`. A key that
    does not work answers 401 at once (never falls through to another scheme). The key itself is
    never logged: the access log names the route, not headers."""

    keyword = KeyParser.keyword

    def authenticate(self, request):
        key = KeyParser().get_from_authorization(request)
        if key is None:
            return None
        api_key = api_key_authenticate(key=key.strip())
        if api_key is None:
            raise AuthenticationFailed(API_KEY_REFUSED, code="api_key_invalid")
        return api_key.user, api_key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class APIKeyScheme(OpenApiAuthenticationExtension):
    target_class = APIKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`, a key made on the API keys page or with POST /api/keys",
        }
