"""What a shop's office manager does in the console, walked in headless Chromium.

One test per walk, in the order a person would meet them; each saves a screenshot of each
page it visits (HOLUB_ARTEFACTS/<test>/). Tenant A's messages are sent here (the walk that
waits for delivery runs before the one that schedules and cancels, so every row it watches
is one it sent); tenant B only looks.
"""

import json
import re
from datetime import datetime, timedelta
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from conftest import (
    AXE,
    HOLUB_URL,
    api_post,
    api_send,
    path_of,
    shot,
    sign_in_form,
    signed_in,
    status_of,
)

KYIV = ZoneInfo("Europe/Kyiv")

# The pages that need a session, as the nav links them.
CONSOLE_PAGES = [
    "/console/compose",
    "/console/messages",
    "/console/campaigns",
    "/console/analytics",
    "/console/contacts",
    "/console/keys",
    "/console/settings",
    "/console/users",
]

SIGN_IN = "/console/sign-in"
MESSAGE_PAGE = re.compile(r"/console/messages/[^/?#]+$")
MESSAGES_LIST = re.compile(r"/console/messages(\?.*)?$")

# The JavaScript twin of conftest.status_of, for waiting on what the page does by itself.
STATUS_JS = "(el) => (el.dataset.status || el.textContent).trim().toLowerCase()"


def count(n: int) -> re.Pattern:
    """A count as the page shows it, with or without a thousands separator (`1 000`)."""
    return re.compile(r"^\s*" + format(n, ",").replace(",", r"[\s\u00a0\u202f,]?") + r"\s*$")


def wait_status(page: Page, selector: str, word: str, timeout_ms: int = 15_000) -> None:
    """Waits until the status in `selector` reads `word` (the page updates itself)."""
    try:
        page.wait_for_function(
            f"([sel, word]) => {{ const el = document.querySelector(sel);"
            f" return !!el && ({STATUS_JS})(el) === word; }}",
            arg=[selector, word],
            timeout=timeout_ms,
            polling=200,
        )
    except PlaywrightError:
        seen = status_of(page.locator(selector)) if page.locator(selector).count() else "nothing"
        pytest.fail(f"{selector} did not read {word!r} within {timeout_ms} ms; it reads {seen!r}")


def compose(page: Page, text: str, recipients: str) -> None:
    page.locator("textarea[name=text]").fill(text)
    page.locator("textarea[name=recipients]").fill(recipients)


def review_and_confirm(page: Page) -> None:
    """Review, see the cost, confirm; lands on the messages list."""
    page.locator("#review").click()
    expect(page.locator("#total-cost")).to_be_visible()
    expect(page.locator("#total-cost")).not_to_be_empty()
    shot(page, "review")
    page.locator("#confirm").click()
    page.wait_for_url(MESSAGES_LIST)
    expect(page.locator("table#messages")).to_be_visible()


def test_every_console_page_without_a_session_redirects_to_sign_in(page: Page):
    for path in CONSOLE_PAGES:
        answer = page.request.get(HOLUB_URL + path, max_redirects=0)
        assert 300 <= answer.status < 400, f"{path}: {answer.status}, not a redirect"
        assert answer.headers.get("location", "").endswith(SIGN_IN), (
            f"{path} redirects to {answer.headers.get('location')!r}")
        page.goto(path)
        assert path_of(page) == SIGN_IN, f"{path} ended at {page.url}"
        expect(page.locator("form#sign-in")).to_be_visible()
        shot(page, path.removeprefix("/console/"))
    for path in ["/", "/console/"]:
        page.goto(path)
        assert path_of(page) == SIGN_IN, f"{path} ended at {page.url}"
        shot(page, "root" if path == "/" else "console")


def test_sign_in_with_a_wrong_password_then_the_right_one(page: Page, tenant_a):
    page.goto(SIGN_IN)
    shot(page, "sign-in")
    sign_in_form(page, tenant_a.email, tenant_a.password + "-wrong")
    expect(page.locator("[role=alert]")).to_be_visible()
    expect(page.locator("[role=alert]")).not_to_be_empty()
    assert path_of(page) == SIGN_IN
    expect(page.locator("form#sign-in")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "holub_session" and c["value"]]
    shot(page, "wrong-password")

    form = page.locator("form#sign-in")
    form.locator("input[name=email]").fill(tenant_a.email)
    form.locator("input[name=password]").fill(tenant_a.password)
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/compose(\?|$)"))
    expect(page.locator("textarea[name=text]")).to_be_visible()
    shot(page, "compose")

    (session,) = [c for c in page.context.cookies() if c["name"] == "holub_session"]
    assert session["httpOnly"], "the session cookie must be HttpOnly"
    assert session["sameSite"] == "Strict", session
    # Secure is left off only for plain http on loopback, which is where this server is.
    assert not session["secure"], "a Secure cookie would be dropped on http://127.0.0.1"


def test_compose_flags_an_invalid_pasted_number(page: Page, tenant_a):
    signed_in(page, tenant_a)
    page.locator("textarea[name=recipients]").fill("067 123 45 67\n+380501234567\n12345")
    invalid = page.locator("#recipients-invalid li")
    expect(invalid).to_have_count(1)
    expect(invalid.first).to_contain_text("12345")
    expect(page.locator("#recipients-count")).to_have_text(count(2))
    assert path_of(page) == "/console/compose", "checking the numbers must not submit the form"
    shot(page, "one-invalid")


def test_segment_counter_follows_typing(page: Page, tenant_a):
    signed_in(page, tenant_a)
    text = page.locator("textarea[name=text]")
    text.click()
    # 70 UCS-2 characters fill one segment exactly; the 71st splits it into two parts.
    text.press_sequentially("щ" * 70)
    expect(page.locator("#encoding")).to_have_text(re.compile(r"^\s*UCS-2\s*$"))
    expect(page.locator("#segments")).to_have_text(count(1))
    expect(page.locator("#chars")).to_contain_text("70")
    shot(page, "70-cyrillic")
    text.press_sequentially("щ")
    expect(page.locator("#segments")).to_have_text(count(2))
    expect(page.locator("#chars")).to_contain_text("71")
    shot(page, "71-cyrillic")


def test_send_a_cyrillic_message_and_watch_it_delivered(page: Page, tenant_a):
    signed_in(page, tenant_a)
    compose(page, "Ваше замовлення №1042 готове. Чекаємо вас у магазині «Шоп А»!",
            "+380671110001\n+380671110002")
    expect(page.locator("#recipients-count")).to_have_text(count(2))
    expect(page.locator("#encoding")).to_have_text(re.compile(r"^\s*UCS-2\s*$"))
    shot(page, "compose-filled")
    review_and_confirm(page)
    shot(page, "messages-sent")

    # The page refreshes itself; the test only watches.
    try:
        page.wait_for_function(
            f"""() => {{
                const rows = [...document.querySelectorAll('#messages tbody tr')];
                return rows.length >= 2 && rows.every(r => {{
                    const s = r.querySelector('td.status');
                    return !!s && ({STATUS_JS})(s) === 'delivered';
                }});
            }}""",
            timeout=30_000,
            polling=250,
        )
    except PlaywrightError:
        shot(page, "not-delivered")
        statuses = [status_of(s) for s in page.locator("#messages tbody tr td.status").all()]
        pytest.fail(f"not every row read 'delivered' within 30 s: {statuses}")
    shot(page, "messages-delivered")

    page.locator("#messages tbody tr a").first.click()
    page.wait_for_url(MESSAGE_PAGE)
    wait_status(page, "#status", "delivered")
    timeline = page.locator("#timeline li")
    expect(timeline.first).to_be_visible()
    assert timeline.count() >= 3, f"timeline: {timeline.all_inner_texts()}"
    shot(page, "message")


def test_schedule_a_message_for_tomorrow_then_cancel_it(page: Page, tenant_a):
    signed_in(page, tenant_a)
    compose(page, "Нагадування: завтра о 12:00 ваш запис у майстерні.", "+380671110003")
    tomorrow = (datetime.now(KYIV) + timedelta(days=1)).date()
    page.locator("input[name=send_at]").fill(f"{tomorrow.isoformat()}T10:00")
    shot(page, "compose-filled")
    review_and_confirm(page)
    shot(page, "messages")

    # The scheduled row: the only one of this run (the other walks send at once).
    find_scheduled = f"""() => {{
        for (const r of document.querySelectorAll('#messages tbody tr')) {{
            const s = r.querySelector('td.status'), a = r.querySelector('a');
            if (s && a && ({STATUS_JS})(s) === 'scheduled') return a.getAttribute('href');
        }}
        return null;
    }}"""
    href = page.wait_for_function(find_scheduled, polling=250).json_value()
    page.locator(f'#messages tbody tr a[href="{href}"]').first.click()
    page.wait_for_url(MESSAGE_PAGE)
    wait_status(page, "#status", "scheduled")
    shot(page, "scheduled")

    page.locator("form#cancel").locator("button, input[type=submit]").first.click()
    wait_status(page, "#status", "cancelled")
    shot(page, "cancelled")


def test_schedule_a_message_for_the_next_minutes_and_watch_it_delivered(page: Page, tenant_a):
    signed_in(page, tenant_a)
    compose(page, "Ваш столик заброньовано на 19:00.", "+380671110004")
    # The first whole minute at least 40 s away (a datetime-local field holds minutes).
    at = (datetime.now(KYIV) + timedelta(seconds=100)).replace(second=0, microsecond=0)
    page.locator("input[name=send_at]").fill(at.strftime("%Y-%m-%dT%H:%M"))
    review_and_confirm(page)
    page.locator("#messages tbody tr a").first.click()
    page.wait_for_url(MESSAGE_PAGE)
    wait_status(page, "#status", "scheduled")
    shot(page, "scheduled")
    # Released at its time and delivered, seen on the same page, which updates itself.
    wait_status(page, "#status", "delivered", timeout_ms=150_000)
    steps = page.locator("#timeline li").count()
    assert steps >= 4, f"{steps} entries in the timeline"
    shot(page, "delivered")


def test_upload_a_csv_of_a_thousand_numbers(page: Page, tenant_a, tmp_path):
    csv = tmp_path / "customers.csv"
    rows = ["phone;name"] + [f"+38067{1_000_000 + i};Клієнт {i}" for i in range(1000)]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")

    signed_in(page, tenant_a)
    page.locator("input[type=file][name=csv]").set_input_files(str(csv))
    # Waits for the header's columns to be offered, then picks one (by value or label).
    page.locator("select[name=csv_column]").select_option("phone")
    expect(page.locator("#recipients-count")).to_have_text(count(1000))
    assert path_of(page) == "/console/compose"
    shot(page, "csv-1000")


def test_analytics_shows_a_summary_a_chart_and_exports_csv(page: Page, tenant_a):
    api_send(tenant_a, "+380671110030", "Для аналітики")
    signed_in(page, tenant_a)
    page.goto("/console/analytics")
    expect(page.locator("#summary")).to_be_visible()
    expect(page.locator("svg").first).to_be_attached()
    # Once a delivery reaches the statistics: its day on the rate line, its provider's rate
    # as a bar beside the figure.
    for _ in range(60):
        if page.locator("#rate-chart circle").count() and \
                page.locator("#by-provider tbody tr", has_text="simulator").count():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(page.locator("#rate-chart circle").first).to_be_attached()
    expect(page.locator("#by-provider tbody tr", has_text="simulator").locator("meter")).to_have_count(1)
    shot(page, "analytics")

    href = page.locator("a#export").get_attribute("href")
    assert href, "a#export has no href"
    # The page's own request context carries the session cookie.
    answer = page.request.get(urljoin(page.url, href))
    assert answer.status == 200, f"{href}: {answer.status}"
    assert answer.headers.get("content-type", "").startswith("text/csv"), answer.headers
    assert answer.text().strip(), "the export is empty, not even a header"


def test_another_tenants_message_is_not_found(page: Page, new_context, tenant_a, tenant_b):
    sent = api_send(tenant_a, "+380671234567", "Тест")
    path = f"/console/messages/{sent['id']}"

    # Its own tenant sees it: the 404 below is about the tenant, not a broken page.
    owner = signed_in(new_context().new_page(), tenant_a)
    answer = owner.goto(path)
    assert answer is not None and answer.status == 200, f"A's own message: {answer and answer.status}"
    shot(owner, "tenant-a-own-message")

    signed_in(page, tenant_b)
    answer = page.goto(path)
    assert answer is not None and answer.status == 404, f"B opening A's message: {answer and answer.status}"
    shot(page, "tenant-b-not-found")
    page.goto("/console/messages")
    expect(page.locator(f'a[href="{path}"]')).to_have_count(0)
    shot(page, "tenant-b-messages")


def test_a_form_post_without_its_csrf_token_is_refused(page: Page, tenant_a):
    signed_in(page, tenant_a)
    compose(page, "Перевірка", "+380671110009")
    shot(page, "compose-filled")
    # The fields the browser would send with this form, and how it would encode them (a form
    # with a file field is multipart); the file itself is left out.
    fields, enctype = page.evaluate("""() => {
        const form = document.querySelector('#review').form;
        const fields = [...new FormData(form)].filter(([, v]) => typeof v === 'string');
        return [Object.fromEntries(fields), form.enctype];
    }""")
    token = fields.pop("csrf", None)
    assert token, "the compose form carries no csrf token"
    url = HOLUB_URL + "/console/compose/review"

    def post(form: dict):
        body = {"multipart": form} if "multipart" in enctype else {"form": form}
        return page.request.post(url, max_redirects=0, **body)

    without = post(fields)
    assert without.status == 403, f"without csrf: {without.status}"
    wrong = post({**fields, "csrf": token[::-1] + "x"})
    assert wrong.status == 403, f"with a wrong csrf: {wrong.status}"
    # The same request with the token goes through: the cookie was carried, and the 403s
    # were about the token.
    right = post({**fields, "csrf": token})
    assert right.status == 200, f"with the csrf token: {right.status}"

    # Another form action: a sign-out without the token is refused and signs nobody out.
    sign_out = page.request.post(HOLUB_URL + "/console/sign-out", form={}, max_redirects=0)
    assert sign_out.status == 403, f"sign-out without csrf: {sign_out.status}"
    page.goto("/console/messages")
    assert path_of(page) == "/console/messages", "a refused sign-out still ended the session"
    shot(page, "still-signed-in")


def test_sign_out_ends_the_session(page: Page, new_context, tenant_a):
    signed_in(page, tenant_a)
    page.goto("/console/messages")
    shot(page, "messages")
    (session,) = [c for c in page.context.cookies() if c["name"] == "holub_session"]

    with page.expect_navigation():
        page.locator('form[action="/console/sign-out"]').locator(
            "button, input[type=submit]").first.click()
    shot(page, "signed-out")
    page.goto("/console/messages")
    assert path_of(page) == SIGN_IN, f"after sign-out, messages ended at {page.url}"
    shot(page, "messages-after-sign-out")

    # The old cookie, kept by someone else, is dead on the server too.
    stolen = new_context()
    stolen.add_cookies([session])
    other = stolen.new_page()
    other.goto("/console/messages")
    assert path_of(other) == SIGN_IN, f"the signed-out cookie still opens {other.url}"


def test_language_is_ukrainian_by_default_and_switches_to_english(page: Page, tenant_a):
    page.goto(SIGN_IN)
    expect(page.locator("html")).to_have_attribute("lang", "uk")
    signed_in(page, tenant_a)
    expect(page.locator("html")).to_have_attribute("lang", "uk")

    page.locator("a[hreflang=en]").first.click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    shot(page, "after-switch-en")
    page.goto("/console/messages")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    shot(page, "messages-en")

    page.locator("a[hreflang=uk]").first.click()
    expect(page.locator("html")).to_have_attribute("lang", "uk")
    shot(page, "after-switch-uk")


AXE_RUN = """async () => {
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => ({ id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
                     nodes: v.nodes.slice(0, 10).map(n => n.target.join(' ')) }));
}"""


def test_no_serious_accessibility_violations(new_context, tenant_a):
    sent = api_send(tenant_a, "+380671110010", "Перевірка доступності")
    # The console's Content-Security-Policy would refuse the injected axe script.
    page = new_context(bypass_csp=True).new_page()
    found = {}

    def check(name: str) -> None:
        page.wait_for_load_state("load")
        shot(page, name)
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate(AXE_RUN)
        if violations:
            found[f"{name} ({path_of(page)})"] = violations

    page.goto(SIGN_IN)
    check("sign-in")
    signed_in(page, tenant_a)
    check("compose")
    page.goto("/console/messages")
    expect(page.locator("table#messages")).to_be_visible()
    check("messages")
    page.goto(f"/console/messages/{sent['id']}")
    expect(page.locator("#status")).to_be_visible()
    check("message")
    page.goto("/console/analytics")
    expect(page.locator("#summary")).to_be_visible()
    check("analytics")
    for path in ["/console/campaigns", "/console/contacts", "/console/templates",
                 "/console/consent?phone=%2B380671110010", "/console/keys",
                 "/console/settings", "/console/users"]:
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        check(path.split("/")[2].split("?")[0])
    # The pages a form answers, shown once or on the way to a send.
    page.goto("/console/compose")
    compose(page, "Перевірка доступності підтвердження", "+380671110011")
    page.locator("#review").click()
    expect(page.locator("#total-cost")).to_be_visible()
    check("review")
    page.goto("/console/users")
    page.locator("#invite-email").fill(f"axe-{datetime.now().timestamp():.0f}@shop-a.example")
    page.locator("form#invite button[type=submit]").click()
    link = page.locator("#invitation-link").inner_text().strip()
    check("invitation-link")
    page.goto("/console/keys")
    page.locator("#key-name").fill(f"axe-{datetime.now().timestamp():.0f}")
    page.locator("form#new-key button[type=submit]").click()
    expect(page.locator("#secret")).to_be_visible()
    check("key-shown-once")
    page.goto("/console/settings")
    page.locator("form#rotate button[type=submit]").click()
    expect(page.locator("#secret")).to_be_visible()
    check("signing-secret-shown-once")
    # The invitation as the invitee opens it, signed out.
    invitee = new_context(bypass_csp=True).new_page()
    page, outer = invitee, page
    page.goto(link)
    expect(page.locator("form#invitation")).to_be_visible()
    check("invitation")
    page = outer

    if found:
        report = json.dumps(found, ensure_ascii=False, indent=2)
        print(report)
        pytest.fail(f"serious or critical accessibility violations:\n{report}")


def test_keyboard_reaches_the_sign_in_fields_in_order(page: Page):
    page.goto(SIGN_IN)
    shot(page, "sign-in")
    targets = {
        "email": "form#sign-in input[name=email]",
        "password": "form#sign-in input[name=password]",
        "submit": "form#sign-in button[type=submit]",
    }
    focused = """(targets) => {
        const a = document.activeElement;
        if (!a || a === document.body) return null;
        for (const [name, selector] of Object.entries(targets)) if (a.matches(selector)) return name;
        return a.tagName.toLowerCase() + (a.id ? '#' + a.id : '') + (a.name ? '[' + a.name + ']' : '');
    }"""
    # Where focus starts counts as reached (an autofocused email field).
    seen = [page.evaluate(focused, targets)]
    for _ in range(30):
        if seen[-1] == "submit":
            break
        page.keyboard.press("Tab")
        seen.append(page.evaluate(focused, targets))
    shot(page, "focus-on-submit")
    order = [s for s in seen if s in targets]
    assert order[:3] == ["email", "password", "submit"], f"Tab went through: {seen}"


def tab_to(page: Page, selector: str, presses: int = 80) -> None:
    """Presses Tab until `selector` has the focus, and checks the focus can be seen."""
    for _ in range(presses):
        if page.evaluate("(sel) => !!document.activeElement && document.activeElement.matches(sel)", selector):
            outline = page.evaluate(
                "() => { const s = getComputedStyle(document.activeElement);"
                " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; }")
            assert outline[0] != "none" or outline[2] != "none", f"{selector}: focus not shown ({outline})"
            return
        page.keyboard.press("Tab")
    pytest.fail(f"Tab never reached {selector}")


def test_keyboard_alone_composes_reviews_and_sends(page: Page, tenant_a):
    signed_in(page, tenant_a)
    tab_to(page, "textarea[name=text]")
    page.keyboard.type("Клавіатурою: ваше замовлення готове")
    tab_to(page, "textarea[name=recipients]")
    page.keyboard.type("+380671110020")
    tab_to(page, "#review")
    page.keyboard.press("Enter")
    expect(page.locator("#total-cost")).to_be_visible()
    shot(page, "review-by-keyboard")
    tab_to(page, "#confirm")
    page.keyboard.press("Enter")
    page.wait_for_url(MESSAGES_LIST)
    expect(page.locator("table#messages")).to_contain_text("+380671110020")
    shot(page, "sent-by-keyboard")


def test_the_console_fits_a_phone_screen(new_context, tenant_a):
    phone = new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                        device_scale_factor=2).new_page()
    signed_in(phone, tenant_a)
    wide = {}
    for path in CONSOLE_PAGES + ["/console/templates", "/console/consent"]:
        phone.goto(path)
        expect(phone.locator("main h1")).to_be_visible()
        shot(phone, "phone-" + path.split("/")[2])
        # Nothing but a table's own scroller may be wider than the screen.
        overflow = phone.evaluate("""() => {
            const width = document.documentElement.clientWidth;
            if (document.documentElement.scrollWidth <= width + 1) return [];
            return [...document.querySelectorAll('body *')]
                .filter(el => el.getBoundingClientRect().right > width + 1
                              && !el.closest('.table-wrap'))
                .slice(0, 5)
                .map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                           + (el.className ? '.' + String(el.className).replace(/ /g, '.') : ''));
        }""")
        if overflow:
            wide[path] = overflow
    assert not wide, f"wider than a 360 px screen: {wide}"
    # And a send works there, by touch.
    phone.goto("/console/compose")
    compose(phone, "З телефона", "+380671110021")
    phone.locator("#review").tap()
    expect(phone.locator("#total-cost")).to_be_visible()
    phone.locator("#confirm").tap()
    phone.wait_for_url(MESSAGES_LIST)
    expect(phone.locator("table#messages")).to_contain_text("+380671110021")


def test_with_javascript_off_a_message_is_still_sent_and_followed(new_context, tenant_a):
    page = new_context(java_script_enabled=False).new_page()
    signed_in(page, tenant_a)
    compose(page, "Без JavaScript", "+380671110022, 0671110023")
    page.locator("#review").click()
    expect(page.locator("#total-cost")).to_be_visible()
    shot(page, "review-without-js")
    page.locator("#confirm").click()
    page.wait_for_url(MESSAGES_LIST)
    row = page.locator("table#messages tbody tr", has_text="+380671110022")
    expect(row).to_have_count(1)
    row.locator("a").first.click()
    page.wait_for_url(MESSAGE_PAGE)
    # Nothing updates by itself without the script: a reload shows the news.
    for _ in range(60):
        if status_of(page.locator("#status")) == "delivered":
            break
        page.wait_for_timeout(250)
        page.reload()
    assert status_of(page.locator("#status")) == "delivered"
    shot(page, "delivered-without-js")


def test_an_invited_viewer_signs_up_and_cannot_send(page: Page, new_context, tenant_a):
    signed_in(page, tenant_a)
    page.goto("/console/users")
    email = f"viewer-{datetime.now().timestamp():.0f}@shop-a.example"
    page.locator("#invite-email").fill(email)
    page.locator("#invite-role").select_option("viewer")
    page.locator("form#invite button[type=submit]").click()
    link = page.locator("#invitation-link").inner_text().strip()
    shot(page, "invitation")
    assert "/console/invitation?" in link
    # The invitee, in a browser of their own, over the same server.
    invitee = new_context().new_page()
    invitee.goto(link)  # the whole link, as the invitee would open it
    invitee.locator("input[name=password]").fill("a-long-enough-password")
    invitee.locator("form#invitation button[type=submit]").click()
    invitee.wait_for_url(re.compile(r"/console/"))
    shot(invitee, "viewer-signed-in")
    # A viewer reads but does not send: compose is refused, messages are shown.
    answer = invitee.goto("/console/compose")
    assert answer is not None and answer.status == 403, f"compose as viewer: {answer and answer.status}"
    answer = invitee.goto("/console/messages")
    assert answer is not None and answer.status == 200
    # The owner sees the new user with its role; the link does not work twice.
    page.goto("/console/users")
    expect(page.locator("#users")).to_contain_text(email)
    again = new_context().new_page()
    again.goto(link)
    again.locator("input[name=password]").fill("another-long-password")
    again.locator("form#invitation button[type=submit]").click()
    expect(again.locator("[role=alert]")).to_be_visible()


def test_an_api_key_made_in_the_console_works_once_and_can_be_revoked(page: Page, tenant_a):
    signed_in(page, tenant_a)
    page.goto("/console/keys")
    name = f"console-{datetime.now().timestamp():.0f}"
    page.locator("#key-name").fill(name)
    page.locator("form#new-key button[type=submit]").click()
    secret = page.locator("#secret").inner_text().strip()
    shot(page, "key-shown-once")
    api = page.context.request
    listed = api.get(urljoin(HOLUB_URL, "/v1/messages"), headers={"Authorization": f"Bearer {secret}"})
    assert listed.status == 200, f"the new key: {listed.status}"
    page.goto("/console/keys")
    assert secret not in page.content(), "a key's secret is shown again"
    row = page.locator("#keys tbody tr", has_text=name)
    row.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/keys$"))
    expect(page.locator("#keys tbody tr", has_text=name)).to_contain_text(re.compile("відкликано|revoked"))
    refused = api.get(urljoin(HOLUB_URL, "/v1/messages"), headers={"Authorization": f"Bearer {secret}"})
    assert refused.status == 401, f"the revoked key: {refused.status}"


def test_a_template_and_a_consent_are_recorded(page: Page, tenant_a):
    signed_in(page, tenant_a)
    page.goto("/console/templates")
    name = f"Замовлення {datetime.now().timestamp():.0f}"
    page.locator("#t-name").fill(name)
    page.locator("#t-text").fill("{{name}}, ваше замовлення готове")
    page.locator("form#new-template button[type=submit]").click()
    expect(page.locator("#templates")).to_contain_text(name)
    shot(page, "templates")
    page.goto("/console/consent")
    page.locator("#r-phone").fill("067 555 12 34")
    page.locator("#r-state").select_option("given")
    page.locator("#r-source").select_option("paper")
    page.locator("#r-evidence").fill("Анкета №17")
    page.locator("form#record-consent button[type=submit]").click()
    expect(page.locator("#consent-state")).to_have_text("given")
    page.locator("#r-state").select_option("withdrawn")
    page.locator("form#record-consent button[type=submit]").click()
    expect(page.locator("#consent-state")).to_have_text("withdrawn")
    expect(page.locator("#ledger li")).to_have_count(2)
    shot(page, "consent-ledger")


def test_contacts_import_from_a_windows_1251_csv(page: Page, tenant_a, tmp_path):
    signed_in(page, tenant_a)
    page.goto("/console/contacts")
    path = tmp_path / "contacts.csv"
    # What Excel in Ukraine saves: Windows-1251, `;`, a number that lost its leading 0.
    path.write_bytes("Телефон;Ім'я;Місто\n671234001;Оксана;Львів\n0671234002;Петро;Київ\nнемає;Іван;Дніпро\n".encode("cp1251"))
    page.locator("#import-file").set_input_files(str(path))
    page.locator("#import-list").fill("Постійні")
    page.locator("form#import button[type=submit]").click()
    report = page.locator("#import-report")
    expect(report).to_be_visible()
    shot(page, "import-report")
    text = report.inner_text()
    assert re.search(r"(Нових контактів|New contacts)\s+2", text), text
    assert re.search(r"(З помилкою|Failed)\s+1", text), text
    page.goto("/console/contacts?list=" + "Постійні")
    expect(page.locator("#contacts tbody tr")).to_have_count(2)
    expect(page.locator("#contacts")).to_contain_text("Оксана")


def test_a_campaign_is_made_estimated_started_and_delivered(page: Page, tenant_a):
    stamp = f"{datetime.now().timestamp():.0f}"
    roster = f"Клієнти {stamp}"
    for i in range(3):
        api_post(tenant_a, "/v1/contacts",
                 {"phone": f"+38067222{stamp[-2:]}{i:02d}", "name": f"Клієнт {i}", "lists": [roster]})
    template = api_post(tenant_a, "/v1/templates", {
        "name": f"Нагадування {stamp}", "text": "{{name}}, нагадуємо про візит завтра",
        "category": "transactional"})
    signed_in(page, tenant_a)
    page.goto("/console/campaigns")
    page.locator("details summary").click()
    form = page.locator("form#new-campaign")
    form.locator("#c-name").fill(f"Візити {stamp}")
    form.locator("#c-template").select_option(template["id"])
    form.locator(f"input[name=list][value='{roster}']").check()
    form.locator("#c-from").select_option(tenant_a.sender)
    form.locator("#c-pace").fill("600")
    shot(page, "new-campaign")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/campaigns$"))
    card = page.locator("section.card", has_text=f"Візити {stamp}")
    expect(card).to_contain_text(re.compile("чернетка|draft"))
    # The estimate shows before it starts: three one-part messages at the account's price.
    expect(card).to_contain_text(re.compile(r"3,00\s*грн|UAH\s*3\.00"))
    shot(page, "draft-with-estimate")
    card.locator("button", has_text=re.compile("Запустити|Start")).click()
    page.wait_for_url(re.compile(r"/console/campaigns$"))
    for _ in range(80):
        card = page.locator("section.card", has_text=f"Візити {stamp}")
        text = card.inner_text()
        if re.search(r"(доставлено|delivered): 3", text):
            break
        page.wait_for_timeout(250)
        page.reload()
    assert re.search(r"(доставлено|delivered): 3", text), text
    expect(card).to_contain_text(re.compile("завершено|completed"))
    shot(page, "campaign-delivered")


def test_an_owner_asks_for_a_new_sender_name(page: Page, tenant_a):
    signed_in(page, tenant_a)
    page.goto("/console/settings")
    page.locator("#sender-name").fill("ShopAPromo")
    page.locator("form#new-sender button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/settings$"))
    row = page.locator("#senders tbody tr", has_text="ShopAPromo")
    expect(row).to_contain_text(re.compile("на розгляді|pending"))
    shot(page, "sender-pending")
    # A name the networks would not take is refused with its reason.
    page.locator("#sender-name").evaluate("(el) => el.removeAttribute('pattern')")
    page.locator("#sender-name").fill("9-bad")
    page.locator("form#new-sender button[type=submit]").click()
    expect(page.locator("main")).to_contain_text("sender")


def test_an_owner_sets_the_quiet_hours(page: Page, tenant_a):
    signed_in(page, tenant_a)
    page.goto("/console/settings")
    field = page.locator("#marketing_window")
    expect(field).to_have_value("09:00-21:00")
    field.fill("10:00-20:00")
    page.locator("form#window button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/settings$"))
    expect(page.locator("#marketing_window")).to_have_value("10:00-20:00")
    expect(page.locator("#limits")).to_contain_text("10:00-20:00")
    shot(page, "quiet-hours")
    # Back to the default, so other walks see the account as it was.
    page.locator("#marketing_window").fill("09:00-21:00")
    page.locator("form#window button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/settings$"))


def test_an_owner_sets_the_status_callback_and_rotates_the_signing_secret(page: Page, tenant_a):
    auth = {"Authorization": f"Bearer {tenant_a.api_key}"}
    api = page.context.request
    signed_in(page, tenant_a)
    page.goto("/console/settings")
    expect(page.locator("#callback_url")).to_have_value("")
    page.locator("#callback_url").fill("https://shop.example.ua/holub/statuses")
    # Only the final statuses: untick the rest.
    finals = {"delivered", "undelivered", "expired", "failed", "rejected", "cancelled"}
    for box in page.locator("form#callback input[name=status]").all():
        box.set_checked(box.get_attribute("value") in finals)
    page.locator("form#callback button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/settings$"))
    expect(page.locator("#callback_url")).to_have_value("https://shop.example.ua/holub/statuses")
    expect(page.locator("form#callback input[value=sent]")).not_to_be_checked()
    expect(page.locator("form#callback input[value=delivered]")).to_be_checked()
    shot(page, "status-callback")
    webhook = api.get(urljoin(HOLUB_URL, "/v1/webhook"), headers=auth).json()
    assert webhook["callback_url"] == "https://shop.example.ua/holub/statuses", webhook
    assert set(webhook["callback_statuses"]) == finals, webhook

    # A bad address is refused with a reason, and nothing changes.
    page.locator("#callback_url").fill("ftp://shop.example.ua/x")
    page.locator("#callback_url").evaluate("(el) => el.type = 'text'")
    page.locator("form#callback button[type=submit]").click()
    expect(page.locator("main")).to_contain_text("callback_url")
    assert api.get(urljoin(HOLUB_URL, "/v1/webhook"), headers=auth).json()["callback_url"] \
        == "https://shop.example.ua/holub/statuses"

    page.goto("/console/settings")
    expect(page.locator("#secret-state")).to_be_visible()
    page.locator("#grace_hours").select_option("1")
    page.locator("form#rotate button[type=submit]").click()
    secret = page.locator("#secret").inner_text().strip()
    assert secret.startswith("whsec_"), secret
    shot(page, "signing-secret-shown-once")
    webhook = api.get(urljoin(HOLUB_URL, "/v1/webhook"), headers=auth).json()
    until = datetime.fromisoformat(webhook["previous_secret_valid_until"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < until - datetime.now(ZoneInfo("UTC")) <= timedelta(hours=1), until
    page.goto("/console/settings")
    assert secret not in page.content(), "the secret is shown again"
    expect(page.locator("#secret-state")).to_contain_text(until.astimezone(KYIV).strftime("%d.%m.%Y %H:%M"))

    # Back to no account callback, so other walks' messages call nobody back.
    page.locator("#callback_url").fill("")
    page.locator("form#callback button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/settings$"))
    assert api.get(urljoin(HOLUB_URL, "/v1/webhook"), headers=auth).json()["callback_url"] is None


def test_changing_the_password_ends_other_sessions(page: Page, new_context, tenant_b):
    other = new_context().new_page()
    signed_in(other, tenant_b)
    signed_in(page, tenant_b)
    page.goto("/console/settings")
    new_password = tenant_b.password + "-new"

    def change(current: str, new: str) -> None:
        page.locator("#current-password").fill(current)
        page.locator("#new-password").fill(new)
        page.locator("form#password button[type=submit]").click()
        page.wait_for_url(re.compile(r"/console/settings\?changed=1$"))

    change(tenant_b.password, new_password)
    expect(page.locator("p.notice")).to_be_visible()
    shot(page, "password-changed")
    # This browser keeps going on its new session; the other one is signed out.
    assert page.goto("/console/messages").status == 200
    answer = other.request.get(urljoin(HOLUB_URL, "/console/messages"), max_redirects=0)
    assert 300 <= answer.status < 400, f"the other session: {answer.status}"
    # The old password no longer signs in; the new one does. Then back, for other walks.
    fresh = new_context().new_page()
    fresh.goto(SIGN_IN)
    sign_in_form(fresh, tenant_b.email, tenant_b.password)
    expect(fresh.locator("[role=alert]")).to_be_visible()
    page.goto("/console/settings")
    change(new_password, tenant_b.password)
