"""The admin under the product's name: its header and title, one Accounts section (allauth's email
addresses beside the users), the site's favicon, no Save button on the read-only job records, and
ledger references readable in the list (a job's links to it)."""

import re

import pytest

from tests.factories import UserFactory
from tests.jobs import make_job

pytestmark = [pytest.mark.unit, pytest.mark.django_db, pytest.mark.usefixtures("demo_model")]


def html(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def test_it_names_the_product_and_has_one_accounts_section(admin_client):
    index = html(admin_client.get("/admin/"))

    assert "Stemfold administration" in index and "Django administration" not in index
    assert "<title>Operations | Stemfold admin</title>" in index
    sections = re.findall(r'<caption>\s*<a href="/admin/(\w+)/"[^>]*>([^<]+)</a>', index)
    assert [name for _, name in sections].count("Accounts") == 1
    accounts = index.split('href="/admin/accounts/"')[1].split("</table>")[0]
    assert "Users" in accounts and "Email addresses" in accounts
    assert '<link rel="icon" href="/static/favicon.svg"' in index


def test_it_shows_no_save_button_on_a_job(admin_client):
    job = make_job(UserFactory())

    page = html(admin_client.get(f"/admin/separation/job/{job.pk}/change/"))

    assert job.original_filename in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page


def test_it_shows_ledger_references_readably(admin_client):
    user = UserFactory()
    job = make_job(user)

    page = html(admin_client.get("/admin/credits/credittransaction/"))

    assert f'<a href="/admin/separation/job/{job.pk}/change/" title="job:{job.pk}">job {str(job.pk)[:8]}…</a>' in page
    assert re.search(r'<span title="signup:[0-9a-f]{64}">signup:[0-9a-f]{17}…</span>', page)
