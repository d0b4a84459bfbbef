from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.stages import EmailVerificationStage
from django.conf import settings
from django.contrib import messages
from django.template.defaultfilters import floatformat

from accounts.login_limits import login_failures_key
from accounts.selectors import user_has_signup_bonus
from accounts.services import email_address_verify, user_save_new
from accounts.social.services import social_login_addresses_verify


class SignupEmailVerificationStage(EmailVerificationStage):
    """allauth's verification step, for sign-ups only. With EMAIL_VERIFICATION=mandatory a sign-up
    waits for the mailed link, so a taken address gets the same answer as a new one (allauth's
    enumeration prevention needs that); an unverified account still logs in and sees its balance,
    as over the API, and only uploads wait for the address (separation.uploads)."""

    def handle(self):
        if not self.login.signup:
            return None, True
        return super().handle()


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=False)
        if commit:
            user_save_new(user=user)
        return user

    def confirm_email(self, request, email_address) -> bool:
        # The mailed link: allauth marks the address verified, our service grants the bonus.
        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            bonus = email_address_verify(address=email_address).bonus
            if bonus is not None:
                amount = floatformat(bonus.transaction.amount, "-2")
                messages.success(request, f"{amount} free credits were added to your balance.")
            elif settings.SIGNUP_BONUS_CREDITS > 0 and not user_has_signup_bonus(user=email_address.user):
                messages.info(request, "This email address already received its free credits on another account.")
        return confirmed

    def pre_login(self, request, user, **kwargs):
        response = super().pre_login(request, user, **kwargs)
        sociallogin = (kwargs.get("signal_kwargs") or {}).get("sociallogin")
        if response is None and sociallogin is not None:
            # A social login: the addresses the provider verified count as verified here.
            bonus = social_login_addresses_verify(user=user, sociallogin=sociallogin)
            if bonus is not None:
                amount = floatformat(bonus.transaction.amount, "-2")
                messages.success(request, f"{amount} free credits were added to your balance.")
        return response

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # Subjects are rendered without the request's context processors: name the site here.
        super().send_mail(template_prefix, email, {"SITE_NAME": settings.SITE_NAME, **context})

    def get_login_stages(self) -> list[str]:
        verification = f"{EmailVerificationStage.__module__}.{EmailVerificationStage.__name__}"
        ours = f"{SignupEmailVerificationStage.__module__}.{SignupEmailVerificationStage.__name__}"
        return [ours if stage == verification else stage for stage in super().get_login_stages()]

    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        # allauth 65 keys its failed-login count (and its reset on a password reset) here, by the
        # login name alone; ours adds the client address, so nobody can lock the owner out.
        return login_failures_key(request=request, login=credentials.get("email") or credentials.get("username") or "")
