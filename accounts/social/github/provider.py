from allauth.socialaccount.providers.github import provider as allauth_github

from accounts.social.github.views import GitHubOAuth2Adapter
from accounts.social.limits import ThrottledLoginStart


class GitHubProvider(ThrottledLoginStart, allauth_github.GitHubProvider):
    oauth2_adapter_class = GitHubOAuth2Adapter


provider_classes = [GitHubProvider]
