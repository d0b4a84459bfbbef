"""The log-in and sign-up pages speak as the header does ("Log in", "Sign up", "Remember me"), not
in django-allauth's own English ("Sign In", "Sign Up", "Remember Me:", "Bad Token")."""

import pytest
from django.test import Client

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def page(path: str) -> str:
    """The page's HTML with its whitespace runs collapsed to one space."""
    response = Client().get(path)
    assert response.status_code == 200, path
    return " ".join(response.content.decode().split())


def test_it_says_log_in_and_remember_me_on_the_log_in_page():
    html = page("/accounts/login/")

    assert "<title> Log in · Stemfold</title>" in html
    assert "Log in </button>" in html
    assert "Remember me" in html
    for allauth_word in ("Sign In", "Remember Me", "Sign Up"):
        assert allauth_word not in html


def test_it_says_sign_up_and_log_in_on_the_sign_up_page():
    html = page("/accounts/signup/")

    assert "Sign up" in html and "Log in</a>" in html
    for allauth_word in ("Sign Up", "Sign In", "sign in"):
        assert allauth_word not in html


def test_it_explains_a_bad_password_reset_link():
    html = page("/accounts/password/reset/key/1-set-password/")

    assert "This link is no longer valid" in html
    assert "Bad Token" not in html
