import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from credits.packs import pack_get, packs_list
from credits.selectors import transactions_for_user
from credits.services import credits_purchase_simulated


@login_required
def credits_page(request):
    history = Paginator(transactions_for_user(user=request.user), 20).get_page(request.GET.get("page"))
    context = {"packs": packs_list(), "history": history, "purchase_token": uuid.uuid4().hex}
    return render(request, "credits/credits.html", context)


@login_required
@require_POST
def buy(request):
    pack = pack_get(request.POST.get("pack", ""))
    if pack is None:
        messages.error(request, "That pack does not exist. Please choose one of the packs below.")
        return redirect("credits")
    # The page's one-time token makes a double-clicked button buy once.
    token = request.POST.get("token", "")[:64]
    posting = credits_purchase_simulated(
        user=request.user, pack=pack, idempotency_key=f"{token}:{pack.id}" if token else ""
    )
    if posting.created:
        messages.success(request, f"{pack.label} added (simulated payment: no money was taken).")
    return redirect("credits")
