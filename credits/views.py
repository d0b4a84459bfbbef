import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from credits.packs import pack_get, packs_list
from credits.payment_providers import PaymentProviderError, payments_mode
from credits.purchases import (
    PAYMENTS_OFF_MESSAGE,
    PROVIDER_ERROR_MESSAGE,
    PaymentsOff,
    purchase_start,
    simulated_purchase_message,
)
from credits.selectors import payment_get_for_user, transaction_list_for_user
from credits.subscriptions import (
    AlreadySubscribed,
    NoCustomer,
    plan_get,
    plans_list,
    subscription_checkout_start,
    subscription_latest,
    subscription_portal_url,
)


@login_required
def credits_page(request):
    history = Paginator(transaction_list_for_user(user=request.user), 20).get_page(request.GET.get("page"))
    context = {
        "packs": packs_list(),
        "history": history,
        "purchase_token": uuid.uuid4().hex,
        "payments_mode": payments_mode().value,
        "plans": plans_list(),
        "subscription": subscription_latest(user_id=request.user.pk),
        "subscribed": request.GET.get("subscribed") == "1",
        "fair_use_hours": settings.SUBSCRIPTION_FAIR_USE_HOURS,
    }
    return render(request, "credits/credits.html", context)


def _see_other(url: str):
    response = redirect(url)
    response.status_code = 303
    return response


@login_required
@require_POST
def buy(request):
    pack = pack_get(request.POST.get("pack", ""))
    if pack is None:
        messages.error(request, "That pack does not exist. Please choose one of the packs below.")
        return redirect("credits")
    # The page's one-time token (one for all its packs) makes a double-clicked button buy once
    # (or open one checkout).
    token = request.POST.get("token", "")[:64]
    try:
        started = purchase_start(
            user=request.user,
            pack=pack,
            site_url=request.build_absolute_uri("/"),
            idempotency_key=f"page:{token}:{pack.id}" if token else "",
        )
    except PaymentsOff:
        messages.error(request, PAYMENTS_OFF_MESSAGE)
        return redirect("credits")
    except PaymentProviderError:
        messages.error(request, PROVIDER_ERROR_MESSAGE)
        return redirect("credits")
    if started.payment is not None:
        return _see_other(started.checkout_url)
    if started.posting.created:
        messages.success(request, simulated_purchase_message(pack=pack))
    return redirect("credits")


@login_required
def checkout_success(request):
    """Where the provider sends the customer after paying (Stripe names the session, Square the
    order). The credits come by webhook, usually within seconds, so the page says so and shows
    whether they are in yet."""
    session_id = request.GET.get("session_id") or request.GET.get("orderId") or ""
    payment = payment_get_for_user(user=request.user, session_id=session_id[:255])
    return render(request, "credits/checkout_success.html", {"payment": payment})


@login_required
def checkout_cancelled(request):
    return render(request, "credits/checkout_cancelled.html")


@login_required
@require_POST
def subscribe(request):
    plan = plan_get(request.POST.get("plan", ""))
    if plan is None:
        messages.error(request, "That plan does not exist. Please choose one of the plans below.")
        return redirect("credits")
    token = request.POST.get("token", "")[:64]
    try:
        url = subscription_checkout_start(
            user=request.user, plan=plan, site_url=request.build_absolute_uri("/"), idempotency_key=token
        )
    except AlreadySubscribed:
        messages.error(request, "You already have an active subscription; manage it from your account page.")
        return redirect("credits")
    except PaymentProviderError:
        messages.error(request, PROVIDER_ERROR_MESSAGE)
        return redirect("credits")
    return _see_other(url)


@login_required
@require_POST
def subscription_manage(request):
    """Off to Stripe's customer portal (cancel, change the card), and back to the account page."""
    try:
        url = subscription_portal_url(user=request.user, return_url=request.build_absolute_uri(reverse("profile")))
    except NoCustomer:
        messages.error(request, "You have no subscription to manage yet.")
        return redirect("profile")
    except PaymentProviderError:
        messages.error(request, PROVIDER_ERROR_MESSAGE)
        return redirect("profile")
    return _see_other(url)
