"""Content-Security-Policy on every response.

Our pages load scripts, styles and images from our own origin only (no inline scripts, no
inline styles), so the policy allows 'self' and nothing else. Three exceptions:

- media-src also allows blob: URLs: the dashboard measures a chosen song's length in the browser
  (an <audio> element on the file's object URL) to show its price before it is uploaded. A blob:
  URL only names data the page itself already holds.

- form-action also allows Stripe Checkout: the credits page posts to our own /credits/buy/,
  which answers 303 to checkout.stripe.com, and Chromium checks form-action on every redirect
  of a form submission, so without it the redirect is blocked.
- /api/docs/ is drf-spectacular's Swagger UI: its page has an inline <script> (carrying the
  CSRF token, so no fixed hash fits) and an inline <style>, and Swagger UI's React components
  set style attributes. It gets its own policy with 'unsafe-inline' for scripts and styles; it
  holds no user data and is still framed by nobody.
"""

from django.urls import reverse

STRIPE_CHECKOUT = "https://checkout.stripe.com"

_BASE = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "media-src": "'self' blob:",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": f"'self' {STRIPE_CHECKOUT}",
    "frame-ancestors": "'none'",
}
_API_DOCS = {**_BASE, "script-src": "'self' 'unsafe-inline'", "style-src": "'self' 'unsafe-inline'"}


def _header(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONTENT_SECURITY_POLICY = _header(_BASE)
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
            policy = API_DOCS_CONTENT_SECURITY_POLICY if request.path == self.api_docs_path else CONTENT_SECURITY_POLICY
            response["Content-Security-Policy"] = policy
        return response
