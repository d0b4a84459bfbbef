"""The admin statistics page in a browser: its charts are drawn from the page's numbers."""

import pytest

from tests import e2e
from tests.conftest import logged_in
from tests.statistics_data import seed_statistics

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
URL = "/admin/separation/job/statistics/"


@pytest.fixture
def seeded(settings):
    return seed_statistics(settings)


CHART_JS = """() => ['chart-jobs-status', 'chart-jobs-model'].map((id) => {
  const chart = window.Chart && window.Chart.getChart(id);
  return chart ? chart.data.datasets.map((set) => [set.label, set.data.reduce((a, b) => a + b, 0)]) : null;
})"""


def test_a_browser_draws_the_charts(seeded, live_server, settings):
    from playwright.sync_api import sync_playwright

    settings.WHITENOISE_USE_FINDERS = True
    client = logged_in(seeded)
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.add_cookies(
                [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
            )
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            # Every script and stylesheet loads (the admin links no favicon; the browser asks anyway).
            page.on(
                "response",
                lambda reply: (
                    reply.status >= 400
                    and not reply.url.endswith("/favicon.ico")
                    and errors.append(f"{reply.status} {reply.url}")
                ),
            )
            page.goto(f"{live_server.url}{URL}")
            page.wait_for_function("() => window.Chart && window.Chart.getChart('chart-jobs-model')")
            by_status, by_model = page.evaluate(CHART_JS)
            page.screenshot(path="/tmp/admin_statistics.png", full_page=True)
        finally:
            browser.close()

    assert errors == []
    assert dict(by_status) == {
        "Waiting": 1,
        "Separating": 1,
        "Done": 4,
        "Failed": 2,
        "Cancelled": 1,
        "Sign-ups": 4,
    }
    assert dict(by_model) == {"demo": 4, "htdemucs": 4, "htdemucs_6s": 1}
