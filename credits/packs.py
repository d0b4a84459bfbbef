"""The credit packs on sale, configured by CREDIT_PACKS."""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings


@dataclass(frozen=True)
class CreditPack:
    id: str
    credits: Decimal
    price: Decimal
    currency: str

    @property
    def label(self) -> str:
        return f"{self.credits:g} credits"

    @property
    def price_per_credit(self) -> Decimal:
        return self.price / self.credits


def packs_list() -> list[CreditPack]:
    return [CreditPack(currency=settings.CREDIT_CURRENCY, **pack) for pack in settings.CREDIT_PACKS]


def pack_get(pack_id: str) -> CreditPack | None:
    return next((pack for pack in packs_list() if pack.id == pack_id), None)
