"""The API's shape: health, schema, docs, and JSON errors for everything that goes wrong."""

import re

import pytest
import yaml

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def test_it_answers_the_api_root_without_auth(api_client):
    response = api_client.get("/api/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "ok"
    assert body["service"] == "stemfold"
    assert body["docs"].endswith("/api/docs/")


def test_it_answers_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def _schema(api_client) -> dict:
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    text = response.content.decode()
    return yaml.safe_load(text)


def test_it_serves_an_openapi_document_with_every_endpoint(api_client):
    schema = _schema(api_client)

    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Stemfold API"
    for path in (
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/me",
        "/api/credits/balance",
        "/api/credits/packages",
        "/api/credits/purchase",
        "/api/credits/history",
    ):
        assert path in schema["paths"], path
    assert "post" in schema["paths"]["/api/credits/purchase"]
    assert "get" in schema["paths"]["/api/credits/history"]


def test_it_serves_swagger_ui_from_our_own_static_files(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    scripts = [url for url in assets if url.endswith(".js")]
    assert any("swagger-ui" in url for url in scripts)
    for url in assets:
        assert url.startswith("/static/"), url
    assert "/api/schema/" in html
    assert "cdn" not in html.lower()
    assert "unpkg" not in html.lower()


def test_it_answers_an_unknown_api_path_with_json_404(api_client):
    response = api_client.get("/api/no-such-thing")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found."}


def test_it_answers_an_unknown_page_with_html_404(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "Page not found" in response.content.decode()


def test_it_refuses_malformed_json_with_400(api_client):
    response = api_client.post("/api/auth/register", data='{"email": "a@example.com",', content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert "JSON parse error" in response.json()["detail"]


def test_it_refuses_a_json_list_instead_of_an_object(api_client):
    response = api_client.post("/api/auth/register", [{"email": "a@example.com"}], format="json")

    assert response.status_code == 400
    body = response.json()
    assert "Expected a dictionary" in body["detail"]
    assert "non_field_errors" in body["errors"]


def test_it_names_every_missing_field_on_register(api_client):
    response = api_client.post("/api/auth/register", {}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert set(body["errors"]) == {"email", "username", "password"}
    assert body["detail"].startswith("email: ")


def test_it_names_fields_of_the_wrong_type_on_register(api_client):
    response = api_client.post(
        "/api/auth/register", {"email": "typed@example.com", "username": ["x"], "password": {"a": 1}}, format="json"
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"username", "password"}
    assert errors["username"] == ["Use only letters, digits and @/./+/-/_ characters."]
    assert errors["password"] == ["Not a valid string."]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"password": "x"}, "email"),
        ({"email": ["a@example.com"], "password": "x"}, "email"),
        ({"username": 12, "password": None}, "password"),
        ({"email": "a@example.com"}, "password"),
    ],
)
def test_it_answers_bad_login_input_with_400_naming_the_field(api_client, payload, field):
    response = api_client.post("/api/auth/login", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.parametrize("payload", [{}, {"package": ["starter"]}, {"package": {"id": "starter"}}, {"package": None}])
def test_it_answers_bad_purchase_input_with_400_naming_the_field(user, user_client, payload):
    response = user_client.post("/api/credits/purchase", payload, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["package"]
    user.refresh_from_db()
    assert user.credits == 3


def test_it_answers_a_list_body_on_purchase_with_400(user_client):
    response = user_client.post("/api/credits/purchase", ["starter"], format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()["errors"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/auth/me"),
        ("get", "/api/credits/balance"),
        ("get", "/api/credits/history"),
        ("post", "/api/credits/purchase"),
    ],
)
def test_it_answers_unauthenticated_calls_with_401_and_www_authenticate(api_client, method, path):
    response = getattr(api_client, method)(path, format="json") if method == "post" else api_client.get(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]


def test_it_answers_a_bad_token_with_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    response = api_client.get("/api/auth/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
