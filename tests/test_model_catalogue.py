"""The model catalogue: one list of models with family, stems, published quality, measured speed,
price and licence, offered only where the weights' licence allows commercial use, shown by
GET /api/models, the pricing page and the upload form."""

import re

import pytest

from separation.catalog import CATALOGUE, entry_price, models_list
from tests.conftest import logged_in

pytestmark = pytest.mark.unit


def by_name(response) -> dict:
    assert response.status_code == 200
    return {model["name"]: model for model in response.json()}


@pytest.mark.usefixtures("demo_model")
def test_it_returns_family_quality_speed_price_and_licence_from_the_api(api_client):
    models = by_name(api_client.get("/api/models"))

    vocals = models["mel_roformer_vocals"]
    assert vocals["family"] == "roformer"
    assert vocals["stems"] == ["vocals", "instrumental"]
    assert vocals["licence"] == "MIT" and vocals["commercial"] is True
    assert vocals["quality"]["sdr"] == {"vocals": 11.01, "instrumental": 17.32}
    assert vocals["quality"]["dataset"] == "MVSep Multisong"
    assert vocals["quality"]["source"].startswith("https://")
    htdemucs = models["htdemucs"]
    assert htdemucs["family"] == "demucs" and htdemucs["speed"] == 1.0
    assert htdemucs["quality"]["overall"] == 9.0 and htdemucs["quality"]["dataset"] == "MUSDB18-HQ test"
    assert models["htdemucs_ft"]["speed"] > 1 and models["htdemucs_ft"]["price_multiplier"] == 4
    assert models["htdemucs_6s"]["quality"] is None


@pytest.mark.usefixtures("demo_model")
def test_it_offers_no_weights_without_a_commercial_licence_unless_the_operator_allows_them(api_client, settings):
    unlicensed = [name for name, entry in CATALOGUE.items() if not entry.commercial]
    assert unlicensed == ["bs_roformer_viperx"]

    assert not set(unlicensed) & set(by_name(api_client.get("/api/models")))

    settings.MODELS_NONCOMMERCIAL = True
    offered = by_name(api_client.get("/api/models"))
    assert offered["bs_roformer_viperx"]["commercial"] is False


def test_it_prices_every_model_from_its_entry():
    for name, entry in CATALOGUE.items():
        if entry.family != "ensemble":
            assert entry_price(name) == entry.price_multiplier


@pytest.mark.usefixtures("demo_model")
def test_it_shows_the_installed_models_quality_and_speed_on_the_pricing_page(client):
    page = client.get("/").content.decode()

    table = page[page.index('<table class="models">') : page.index("</table>")]
    rows = re.findall(r'<th scope="row">([^<]+)', table)
    assert rows == [model.label for model in models_list() if model.installed] == [CATALOGUE["demo"].label]
    assert "untrained" in table and "not measured" in table and "1 credit per 10 minutes" in table


@pytest.mark.usefixtures("demo_model")
def test_it_shows_quality_and_speed_beside_the_upload_forms_model_select(user):
    page = logged_in(user).get("/dashboard/").content.decode()

    option = re.search(r'<option value="demo"[^>]*>\s*([^<]+?)\s*</option>', page).group(1)
    assert "1 credit per 10 minutes" in option
    assert 'aria-describedby="id_model_help"' in page
    compare = page[page.index('<details class="field-wide model-compare">') : page.index("</details>")]
    row = compare[compare.index('<th scope="row">') : compare.index("</tr>", compare.index('<th scope="row">'))]
    assert "Demo model" in row and "untrained" in row and "not measured" in row


@pytest.mark.usefixtures("demo_model")
def test_it_lists_the_catalogue_on_the_admins_models_page(admin_client, user):
    page = admin_client.get("/admin/separation/job/models/").content.decode()

    start = page.index('<table id="models">')
    table = page[start : page.index("</table>", start)]
    names = re.findall(r'<th scope="row"><code>([^<]+)</code>', table)
    assert names == [model.name for model in models_list()]
    demo_row = table[table.index("<code>demo</code>") :].split("</tr>")[0]
    assert "<td>yes</td>" in demo_row and re.search(r"<td>[\d.]+\xa0(KB|MB)</td>", demo_row)
    assert "bs_roformer_viperx" in page[page.index("Not offered") :]
    assert 'href="/admin/separation/job/models/"' in admin_client.get("/admin/separation/job/").content.decode()
    assert logged_in(user).get("/admin/separation/job/models/").status_code == 302  # to the admin login
