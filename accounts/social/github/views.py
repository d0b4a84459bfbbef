from allauth.socialaccount.providers.github import views as allauth_github
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView

from accounts.social.endpoints import provider_setting

GITHUB_COM = "https://github.com"


class GitHubOAuth2Adapter(allauth_github.GitHubOAuth2Adapter):
    """allauth's, with the endpoints under GITHUB_URL (GitHub Enterprise: <url>/api/v3 for the API)."""

    @property
    def web_url(self) -> str:
        return provider_setting("github", "GITHUB_URL", GITHUB_COM).rstrip("/")

    @property
    def api_url(self) -> str:
        return "https://api.github.com" if self.web_url == GITHUB_COM else f"{self.web_url}/api/v3"

    @property
    def access_token_url(self) -> str:
        return f"{self.web_url}/login/oauth/access_token"

    @property
    def authorize_url(self) -> str:
        return f"{self.web_url}/login/oauth/authorize"

    @property
    def profile_url(self) -> str:
        return f"{self.api_url}/user"

    @property
    def emails_url(self) -> str:
        return f"{self.api_url}/user/emails"


oauth2_login = OAuth2LoginView.adapter_view(GitHubOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(GitHubOAuth2Adapter)
