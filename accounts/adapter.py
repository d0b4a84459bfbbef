from allauth.account.adapter import DefaultAccountAdapter

from accounts.services import user_save_new


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=False)
        if commit:
            user_save_new(user=user)
        return user
