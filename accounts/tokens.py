"""API bearer tokens: issued here only, each carrying the user's token version."""

from rest_framework_simplejwt.tokens import AccessToken

# The claim holding User.token_version when the token was issued. Tokens issued before it
# existed have none and count as version 0, so they end at the account's next password change.
VERSION_CLAIM = "ver"


def access_token_issue(*, user) -> str:
    token = AccessToken.for_user(user)
    token[VERSION_CLAIM] = user.token_version
    return str(token)


def token_version_of(token) -> int:
    return token.get(VERSION_CLAIM, 0)
