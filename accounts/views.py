from datetime import timedelta

from allauth.account import views as allauth_views
from allauth.socialaccount.forms import DisconnectForm
from allauth.socialaccount.models import SocialAccount
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import services
from accounts.forms import APIKeyForm, PreferencesForm
from accounts.login_limits import TOO_MANY_LOGIN_ATTEMPTS, login_retry_after_seconds
from accounts.selectors import api_key_get_for_user, api_key_list_for_user, user_email_verified
from accounts.services import (
    TooManyAPIKeys,
    VerificationMail,
    api_key_create,
    email_verification_send,
    user_update_preferences,
)
from accounts.social.selectors import social_connection_list, social_provider_list


def login(request):
    """allauth's login page, answering 429 with Retry-After when this client has failed too often
    (allauth shows the form again with its message, as a 200)."""
    response = allauth_views.login(request)
    form = (getattr(response, "context_data", None) or {}).get("form")
    if form is not None and form.is_bound and _throttled(form):
        response.status_code = 429
        response["Retry-After"] = str(login_retry_after_seconds())
    elif response.status_code == 429 and not response.has_header("Retry-After"):
        response["Retry-After"] = str(login_retry_after_seconds("login"))
    return response


def _throttled(form) -> bool:
    return any(error.code == TOO_MANY_LOGIN_ATTEMPTS for error in form.errors.as_data().get("__all__", []))


@login_required
def profile(request):
    if request.method == "POST":
        form = PreferencesForm(request.POST, instance=request.user)
        if form.is_valid():
            user_update_preferences(user=request.user, **form.cleaned_data)
            messages.success(request, "Your email preferences were saved.")
            return redirect("profile")
    else:
        form = PreferencesForm(instance=request.user)
    return render(
        request,
        "accounts/profile.html",
        {
            "preferences_form": form,
            "email_verified": user_email_verified(user=request.user),
            "connections": social_connection_list(user=request.user),
            "social_providers": social_provider_list(request=request),
        },
    )


def _own_connection(request, connection_id: int) -> SocialAccount:
    """The user's connected account; another's is a 404."""
    return get_object_or_404(SocialAccount, pk=connection_id, user_id=request.user.pk)


@login_required
@require_POST
def connection_remove(request, connection_id: int):
    account = _own_connection(request, connection_id)
    # allauth's form: it refuses the last way in (no password, or no verified address to reset
    # one with), asks for the password again after a while, and says what it did.
    form = DisconnectForm({"account": account.pk}, request=request)
    if form.is_valid():
        form.save()
    else:
        for error in form.non_field_errors():
            messages.error(request, error)
    return redirect("profile")


@login_required
@require_POST
def verify_email_resend(request):
    sent = email_verification_send(request=request, user=request.user)
    if sent is VerificationMail.SENT:
        messages.success(request, f"We sent a new verification link to {request.user.email}.")
    elif sent is VerificationMail.ALREADY_VERIFIED:
        messages.info(request, "Your email address is already verified.")
    else:
        messages.info(
            request,
            "We sent you a verification link a moment ago; it still works. "
            "Check your inbox (and spam folder), or ask again in a few minutes.",
        )
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = "dashboard"
    return redirect(next_url)


@login_required
def api_keys(request):
    """The API keys page. A new key is shown whole in the answer to its POST only (never stored
    or put in a message cookie), and that answer is not cached."""
    new_key = None
    if request.method == "POST":
        form = APIKeyForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            expires_at = timezone.now() + timedelta(days=days) if days else None
            try:
                api_key, key = api_key_create(user=request.user, name=form.cleaned_data["name"], expires_at=expires_at)
            except TooManyAPIKeys as refused:
                form.add_error(None, str(refused))
            else:
                new_key = {"name": api_key.name, "key": key}
                form = APIKeyForm()
    else:
        form = APIKeyForm()
    response = render(
        request,
        "accounts/api_keys.html",
        {"form": form, "keys": api_key_list_for_user(user=request.user), "new_key": new_key, "now": timezone.now()},
    )
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def api_key_revoke(request, key_id):
    api_key = services.api_key_revoke(api_key=api_key_get_for_user(user=request.user, key_id=key_id))
    messages.success(request, f"Revoked the key “{api_key.name}” ({api_key.prefix}…): it no longer works.")
    return redirect("api-keys-page")
