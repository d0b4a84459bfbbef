"""Reading settings from the environment: django-environ's typed readers, made strict.

- A blank value counts as unset, so an exported `.env.example` (every variable, many of them
  empty) keeps the defaults.
- A value that does not parse stops start-up with ImproperlyConfigured naming the variable and what
  it accepts. Plain django-environ reads `DEBUG=maybe` as False and `0.5x` as 0.5.
- No `$OTHER_VARIABLE` references: a value is taken as written (Django's generated secret keys
  may start with `$`).

The casts below parse this service's own formats and raise ValueError saying what they accept;
`Env` adds the variable's name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Env(environ.Env):
    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        value = self.ENVIRON.get(var, "").strip()
        if not value:
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable")
            return self.parse_value(default, cast) if parse_default and default is not None else default
        try:
            return self.parse_value(value, cast)
        except ValueError as error:
            raise ImproperlyConfigured(f"{var} {error}; got {value!r}") from None

    @classmethod
    def parse_value(cls, value, cast):
        if cast is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError("must be one of 1/0, true/false, yes/no, on/off")
        if cast is int:
            try:
                return int(value)
            except ValueError:
                raise ValueError("must be a whole number") from None
        if cast is float:
            try:
                return float(value)
            except ValueError:
                raise ValueError("must be a number") from None
        if cast is list:
            return [item.strip() for item in value.split(",") if item.strip()]
        return super().parse_value(value, cast)

    def int(self, var, default=environ.Env.NOTSET, *, minimum=0):
        number = super().int(var, default)
        if number < minimum:
            raise ImproperlyConfigured(f"{var} must be at least {minimum}; got {number}")
        return number

    def float(self, var, default=environ.Env.NOTSET, *, minimum, maximum):
        number = super().float(var, default)
        if number is not None and not minimum <= number <= maximum:
            raise ImproperlyConfigured(f"{var} must be between {minimum} and {maximum}; got {number}")
        return number

    def db_url(self, var, default=environ.Env.NOTSET):
        # Neither the value nor environ's warning about it is repeated: the URL holds a password.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                config = super().db_url(var, default)
            except ValueError as error:  # a port that is not a number
                raise ImproperlyConfigured(f"{var} is not a valid database URL: {error}") from None
        if config.get("ENGINE") not in self.DB_SCHEMES.values():
            raise ImproperlyConfigured(
                f"{var} is not a valid database URL: unknown scheme (e.g. postgres://user:password@host:5432/name)"
            )
        return config

    def email_url(self, var, default=environ.Env.NOTSET):
        # Parsed here rather than by a cast, whose error would repeat the value and its password.
        try:
            return self.email_url_config(self.str(var, default))
        except (ImproperlyConfigured, ValueError) as error:
            raise ImproperlyConfigured(f"{var} is not a valid email URL: {error}") from None


def one_of(*choices: str, normalise: Callable[[str], str] = str) -> Callable[[str], str]:
    """A cast accepting only `choices`, compared after `normalise` (e.g. str.lower)."""
    accepted = f"{', '.join(choices[:-1])} or {choices[-1]}"

    def cast(value: str) -> str:
        if normalise(value) not in choices:
            raise ValueError(f"must be {accepted}")
        return normalise(value)

    return cast


def demucs_device(value: str) -> str:
    if value not in {"auto", "cpu", "cuda"} and not value.startswith("cuda:"):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return value


def throttle_rate(value: str) -> str:
    """A DRF throttle rate such as 10/minute."""
    count, _, period = value.partition("/")
    if not count.isdigit() or not period or period[0] not in "smhd":
        raise ValueError("must look like 10/minute (s, m, h or d)")
    return value


def credit_packs(value: str) -> list[dict]:
    """`id:credits:price,...`, e.g. `starter:5:1.00,standard:25:4.00`."""
    packs = []
    for item in value.split(","):
        parts = item.strip().split(":")
        try:
            pack_id, credits, price = parts
            pack = {"id": pack_id, "credits": Decimal(credits), "price": Decimal(price)}
        except (ValueError, InvalidOperation):
            raise ValueError(f"must look like id:credits:price,...; bad item {item!r}") from None
        if not pack_id or pack["credits"] <= 0 or pack["price"] < 0:
            raise ValueError(f"must give each pack an id, credits > 0 and a price >= 0; bad item {item!r}")
        packs.append(pack)
    if len({pack["id"] for pack in packs}) != len(packs):
        raise ValueError("must give each pack its own id")
    return packs


def subscription_plans(value: str) -> list[dict]:
    """`id:monthly price,...`, e.g. `unlimited:9.99`."""
    plans = []
    for item in value.split(","):
        try:
            plan_id, price = item.strip().split(":")
            plan = {"id": plan_id, "price": Decimal(price)}
        except (ValueError, InvalidOperation):
            raise ValueError(f"must look like id:price,...; bad item {item!r}") from None
        if not plan_id or not plan["price"] > 0:
            raise ValueError(f"must give each plan an id and a price > 0; bad item {item!r}")
        plans.append(plan)
    if len({plan["id"] for plan in plans}) != len(plans):
        raise ValueError("must give each plan its own id")
    return plans


def preload_models(value: str) -> str | list[str]:
    """installed, default, none, or a comma-separated list of model names (the separation app
    checks the names against its catalogue at start-up)."""
    if value.lower() in {"installed", "default", "none"}:
        return value.lower()
    names = [item.strip() for item in value.split(",") if item.strip()]
    if not names:
        raise ValueError("must be installed, default, none or a comma-separated list of model names")
    return names


def oauth_apps(env: Env, prefix: str) -> list[dict]:
    """allauth's APPS for one provider from <prefix>_CLIENT_ID and <prefix>_CLIENT_SECRET: one
    app when both are set, none when neither is; one without the other stops start-up."""
    client_id, secret = env.str(f"{prefix}_CLIENT_ID", default=""), env.str(f"{prefix}_CLIENT_SECRET", default="")
    if bool(client_id) != bool(secret):
        raise ImproperlyConfigured(f"Set both {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET, or neither")
    return [{"client_id": client_id, "secret": secret}] if client_id else []
