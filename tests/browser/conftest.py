"""The console walked in a real browser: headless Debian Chromium driven by Playwright.

`scripts/browser-tests` starts `holub serve` with two tenants (A and B), each with an owner,
and hands their details over in the environment (HOLUB_A_EMAIL, HOLUB_A_PASSWORD,
HOLUB_A_TENANT, HOLUB_A_KEY, HOLUB_A_SENDER, and the same for B). Playwright's own browser
download cannot reach this network, so the browser is Debian's, given by `executable_path`.
"""

import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

HOLUB_URL = os.environ.get("HOLUB_URL", "http://127.0.0.1:8080").rstrip("/")
ARTEFACTS = Path(os.environ.get("HOLUB_ARTEFACTS", "target/browser-artefacts"))
CHROMIUM = os.environ.get("HOLUB_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"

# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# machine's closed network refuses; --no-sandbox because the tests run as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A debug build on two cores answers slower than Playwright's 5 s default expects.
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


@dataclass(frozen=True)
class Tenant:
    letter: str
    name: str
    sender: str
    tenant_id: str
    api_key: str
    email: str
    password: str


def _tenant(letter: str) -> Tenant:
    env = lambda field: os.environ[f"HOLUB_{letter}_{field}"]  # noqa: E731
    return Tenant(
        letter=letter,
        name=env("NAME"),
        sender=env("SENDER"),
        tenant_id=env("TENANT"),
        api_key=env("KEY"),
        email=env("EMAIL"),
        password=env("PASSWORD"),
    )


@pytest.fixture(scope="session")
def tenant_a() -> Tenant:
    return _tenant("A")


@pytest.fixture(scope="session")
def tenant_b() -> Tenant:
    return _tenant("B")


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser: Browser):
    """A factory of fresh contexts (no cookies), all closed after the test.

    A Ukrainian office manager's browser: Ukrainian locale, Kyiv time."""
    contexts: list[BrowserContext] = []

    def make(**options) -> BrowserContext:
        options = {"base_url": HOLUB_URL, "locale": "uk-UA", "timezone_id": "Europe/Kyiv",
                   "viewport": {"width": 1280, "height": 900}, **options}
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(new_context, request) -> Page:
    """A page in a fresh context; on failure, a screenshot of where it stopped."""
    page = new_context().new_page()
    # A person who presses "cancel" and is asked "are you sure?" means it.
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not page.is_closed():
        try:
            shot(page, "failure")
        except Exception as e:  # the browser may be what failed
            print(f"no failure screenshot: {e}")


_shots: dict[str, int] = {}


def _test_name() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "outside-a-test")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", current.split("::")[-1].split(" ")[0])


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot, numbered in the order taken, under the test's own folder."""
    test = _test_name()
    _shots[test] = _shots.get(test, 0) + 1
    path = ARTEFACTS / test / f"{_shots[test]:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def path_of(page: Page) -> str:
    return urlparse(page.url).path


def sign_in_form(page: Page, email: str, password: str) -> None:
    page.goto("/console/sign-in")
    form = page.locator("form#sign-in")
    form.locator("input[name=email]").fill(email)
    form.locator("input[name=password]").fill(password)
    form.locator("button[type=submit]").click()


def signed_in(page: Page, tenant: Tenant) -> Page:
    """Signs the tenant's owner in through the sign-in form; lands on compose (screenshot
    `signed-in`)."""
    sign_in_form(page, tenant.email, tenant.password)
    page.wait_for_url(re.compile(r"/console/compose(\?|$)"))
    shot(page, f"signed-in-{tenant.letter.lower()}")
    return page


def status_of(element) -> str:
    """A status as the page shows it: its `data-status` word where the page gives one (the
    text may be in Ukrainian), else its text."""
    return (element.get_attribute("data-status") or element.inner_text()).strip().lower()


def api_post(tenant: Tenant, path: str, body: dict) -> dict:
    """A POST to the public API with the tenant's key, as its integration would make it."""
    request = urllib.request.Request(
        f"{HOLUB_URL}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {tenant.api_key}",
                 "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def api_send(tenant: Tenant, to: str, text: str) -> dict:
    """Sends one message through the public API, as the tenant's integration would."""
    return api_post(tenant, "/v1/messages", {"to": to, "from": tenant.sender, "text": text})
