"""Content-Security-Policy on every response.

Our pages load scripts, styles and images from our own origin only (no inline scripts, no
inline styles), so the policy allows 'self' and nothing else. Two exceptions:

- form-action also allows Stripe Checkout and Square's hosted checkout: the credits page posts
  to our own /credits/buy/, which answers 303 to checkout.stripe.com or a square.link payment
  link (which redirects on to checkout.square.site), and Chromium checks form-action on every
  redirect of a form submission, so without them the redirect is blocked. When SQUARE_API_BASE
  or STRIPE_API_BASE points at another host (a test's fake provider), that host serves the
  checkout pages too, so its origin is allowed as well.
- /api/docs/ is drf-spectacular's Swagger UI: its page has an inline <script> (carrying the
  CSRF token, so no fixed hash fits) and an inline <style>, and Swagger UI's React components
  set style attributes. It gets its own policy with 'unsafe-inline' for scripts and styles; it
  holds no user data and is still framed by nobody.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

# Checkout, and the customer portal (the account page's "Manage subscription" posts to us, then 303).
STRIPE_CHECKOUT = "https://checkout.stripe.com https://billing.stripe.com"
SQUARE_CHECKOUT = "https://square.link https://*.square.link https://*.square.site"

_BASE = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": f"'self' {STRIPE_CHECKOUT} {SQUARE_CHECKOUT}",
    "frame-ancestors": "'none'",
}
_API_DOCS = {**_BASE, "script-src": "'self' 'unsafe-inline'", "style-src": "'self' 'unsafe-inline'"}


def _header(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = _header(_BASE)


def _policy_with_provider_hosts() -> str:
    """The policy, with form-action also allowing the provider API hosts an operator set."""
    origins = []
    for base in (settings.STRIPE_API_BASE, settings.SQUARE_API_BASE):
        if base:
            parts = urlsplit(base)
            origins.append(f"{parts.scheme}://{parts.netloc}")
    if not origins:
        return CONTENT_SECURITY_POLICY
    return _header({**_BASE, "form-action": " ".join([_BASE["form-action"], *origins])})


API_DOCS_CONTENT_SECURITY_POLICY = _header(_API_DOCS)


class ContentSecurityPolicyMiddleware:
    """Sets Content-Security-Policy unless the view set its own."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.api_docs_path = None

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            if self.api_docs_path is None:
                self.api_docs_path = reverse("api-docs")
            if request.path == self.api_docs_path:
                policy = API_DOCS_CONTENT_SECURITY_POLICY
            else:
                policy = _policy_with_provider_hosts()
            response["Content-Security-Policy"] = policy
        return response
