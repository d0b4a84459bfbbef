"""Social login (GitHub, Google) through django-allauth's socialaccount.

The two providers are allauth's, subclassed only so that their endpoints are read from
SOCIALACCOUNT_PROVIDERS when a request uses them rather than when allauth is imported: GitHub
Enterprise (GITHUB_URL) and the tests' fake providers on loopback change them. Which providers
are offered, how accounts are made and connected: accounts.social.adapter.
"""
