from allauth.socialaccount.internal import jwtkit
from allauth.socialaccount.providers.google import views as allauth_google
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView

from accounts.social.endpoints import provider_setting


class GoogleOAuth2Adapter(allauth_google.GoogleOAuth2Adapter):
    """allauth's, with its endpoints and the ID token's issuer read from allauth's own Google
    settings (AUTHORIZE_URL, ACCESS_TOKEN_URL, IDENTITY_URL, ID_TOKEN_ISSUER, CERTS_URL) when used."""

    @property
    def access_token_url(self) -> str:
        return provider_setting("google", "ACCESS_TOKEN_URL", allauth_google.ACCESS_TOKEN_URL)

    @property
    def authorize_url(self) -> str:
        return provider_setting("google", "AUTHORIZE_URL", allauth_google.AUTHORIZE_URL)

    @property
    def identity_url(self) -> str:
        return provider_setting("google", "IDENTITY_URL", allauth_google.IDENTITY_URL)

    @property
    def id_token_issuer(self) -> str:
        return provider_setting("google", "ID_TOKEN_ISSUER", allauth_google.ID_TOKEN_ISSUER)

    def _decode_id_token(self, app, id_token):
        # allauth's, with this issuer. The token came straight from the token endpoint over TLS, so
        # (as allauth and OpenID Connect Core 3.1.3.7 allow) its signature is not checked; its
        # issuer, audience (our client id) and expiry are.
        return jwtkit.verify_and_decode(
            credential=id_token,
            keys_url=provider_setting("google", "CERTS_URL", allauth_google.CERTS_URL),
            issuer=self.id_token_issuer,
            audience=app.client_id,
            lookup_kid=jwtkit.lookup_kid_pem_x509_certificate,
            verify_signature=not self.did_fetch_access_token,
        )


oauth2_login = OAuth2LoginView.adapter_view(GoogleOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(GoogleOAuth2Adapter)
