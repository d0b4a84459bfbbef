import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from credits.api import PAYMENTS_OFF_DETAIL, PROVIDER_ERROR_DETAIL, checkout_urls
from credits.models import Payment
from credits.packs import pack_get, packs_list
from credits.payment_providers import PaymentProviderError, PaymentsMode, payments_mode
from credits.payments import payment_checkout_start
from credits.selectors import transactions_for_user
from credits.services import credits_purchase_simulated


@login_required
def credits_page(request):
    history = Paginator(transactions_for_user(user=request.user), 20).get_page(request.GET.get("page"))
    context = {
        "packs": packs_list(),
        "history": history,
        "purchase_token": uuid.uuid4().hex,
        "payments_mode": payments_mode().value,
    }
    return render(request, "credits/credits.html", context)


@login_required
@require_POST
def buy(request):
    pack = pack_get(request.POST.get("pack", ""))
    if pack is None:
        messages.error(request, "That pack does not exist. Please choose one of the packs below.")
        return redirect("credits")
    mode = payments_mode()
    if mode == PaymentsMode.OFF:
        messages.error(request, PAYMENTS_OFF_DETAIL)
        return redirect("credits")
    # The page's one-time token makes a double-clicked button buy once (or open one checkout).
    token = request.POST.get("token", "")[:64]
    if mode == PaymentsMode.STRIPE:
        success_url, cancel_url = checkout_urls(request)
        try:
            _, url = payment_checkout_start(
                user=request.user,
                pack=pack,
                success_url=success_url,
                cancel_url=cancel_url,
                idempotency_key=f"page:{token}" if token else "",
            )
        except PaymentProviderError:
            messages.error(request, PROVIDER_ERROR_DETAIL)
            return redirect("credits")
        response = redirect(url)
        response.status_code = 303
        return response
    posting = credits_purchase_simulated(
        user=request.user, pack=pack, idempotency_key=f"{token}:{pack.id}" if token else ""
    )
    if posting.created:
        messages.success(request, f"{pack.label} added (simulated payment: no money was taken).")
    return redirect("credits")


@login_required
def checkout_success(request):
    """Where Stripe sends the customer after paying. The credits come by webhook, usually within
    seconds, so the page says so and shows whether they are in yet."""
    session_id = request.GET.get("session_id", "")[:255]
    payment = Payment.objects.filter(user=request.user, provider_session_id=session_id).first() if session_id else None
    return render(request, "credits/checkout_success.html", {"payment": payment})


@login_required
def checkout_cancelled(request):
    return render(request, "credits/checkout_cancelled.html")
