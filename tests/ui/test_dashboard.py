"""The dashboard in a real browser: Debian's Chromium, headless, driven by
playwright's own driver (never `playwright install`: no browser downloads).

`tests/dashboard.rs` (`cargo test --test dashboard`) starts a gateway on a
mock upstream, sends real requests through it, and runs this file with:

    SWITCHYARD_URL         http://127.0.0.1:PORT
    SWITCHYARD_KEY_FILE    the admin key file written at first start
    SWITCHYARD_CHROMIUM    the Chromium binary (/usr/bin/chromium)
    SWITCHYARD_SCREENSHOTS where each page's screenshot goes
    SWITCHYARD_MODEL       a priced model the mock serves
    SWITCHYARD_REQUESTS    how many requests were answered before the browser starts
    SWITCHYARD_FAILOVER_MODEL  a model whose one request failed over (two attempts)
    SWITCHYARD_KEY_ID      a provider key of the provider `mock`
    SWITCHYARD_VIEWER_KEY_FILE  the key file of an admin key with the `viewer` role

The tests run in file order and share one browser page, as one operator
would: log in, read the overview, create a token and use it, disable a key,
visit every page, log out. They assert on what a person sees (roles, labels,
text), never on CSS classes.
"""

import json
import os
import pathlib
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

URL = os.environ["SWITCHYARD_URL"]
KEY_FILE = os.environ["SWITCHYARD_KEY_FILE"]
CHROMIUM = os.environ["SWITCHYARD_CHROMIUM"]
SHOTS = pathlib.Path(os.environ["SWITCHYARD_SCREENSHOTS"])
MODEL = os.environ["SWITCHYARD_MODEL"]
REQUESTS = os.environ["SWITCHYARD_REQUESTS"]
FAILOVER_MODEL = os.environ["SWITCHYARD_FAILOVER_MODEL"]
KEY_ID = os.environ["SWITCHYARD_KEY_ID"]
VIEWER_KEY_FILE = os.environ["SWITCHYARD_VIEWER_KEY_FILE"]

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What the page printed that must not be there: script errors and anything
# the Content-Security-Policy blocked.
PROBLEMS = []
# Shared between tests (they run in order).
STATE = {}


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def context(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="light")
    yield context
    context.close()


@pytest.fixture(scope="module")
def page(context):
    page = context.new_page()
    page.on("pageerror", lambda error: PROBLEMS.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: PROBLEMS.append(f"console: {message.text}")
        if message.type == "error" and "Content Security Policy" in message.text
        else None,
    )
    # confirm() and prompt() (disable a key: the reason) are answered yes.
    page.on(
        "dialog",
        lambda dialog: dialog.accept("disabled from the browser test")
        if dialog.type == "prompt"
        else dialog.accept(),
    )
    yield page
    page.close()


def go(page, route, heading):
    page.goto(f"{URL}/ui#/{route}")
    expect(page.get_by_role("heading", name=heading, exact=True, level=1)).to_be_visible()


def card(page, name):
    return page.get_by_role("group", name=name, exact=True)


def session_cookie(context):
    return next(c for c in context.cookies() if c["name"] == "switchyard_session")


def test_log_in_with_the_key_file(page, context):
    page.goto(f"{URL}/ui")
    expect(page.get_by_role("heading", name="Switchyard — log in")).to_be_visible()
    shot(page, "01-login")
    page.get_by_label("Admin key file").set_input_files(KEY_FILE)
    page.get_by_role("button", name="Log in with key file").click()
    expect(page.get_by_role("heading", name="Overview", exact=True, level=1)).to_be_visible()
    cookie = session_cookie(context)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    # HttpOnly: the page's scripts cannot read the session token.
    assert "switchyard_session" not in page.evaluate("document.cookie")
    # A reload recovers the session (and its CSRF token) from the cookie.
    page.reload()
    expect(page.get_by_role("heading", name="Overview", exact=True, level=1)).to_be_visible()


def test_the_overview_shows_the_requests_sent_through_the_gateway(page):
    go(page, "overview", "Overview")
    expect(card(page, "Requests")).to_contain_text(REQUESTS)
    expect(card(page, "Success rate")).to_contain_text("%")
    expect(card(page, "Latency p99")).to_contain_text("ms")
    expect(card(page, "Time to first token p50")).to_contain_text("ms")
    expect(card(page, "Cost")).to_contain_text("$")
    top_models = page.get_by_role("table", name="Top models")
    expect(top_models).to_contain_text(MODEL)
    # Charts are drawn (uPlot, vendored) on canvases.
    chart = page.get_by_role("img", name="Requests and errors")
    expect(chart.locator("canvas")).to_have_count(1)
    # The unpriced model the test used is called out.
    expect(page.get_by_role("table", name="Unpriced models")).to_contain_text("mock-unpriced")
    # Top tokens and providers by spend, from /admin/metrics/top (rollups):
    # the test's token ("load") and provider ("mock") with its requests.
    expect(page.get_by_role("table", name="Top tokens")).to_contain_text("load")
    expect(page.get_by_role("table", name="Top providers")).to_contain_text("mock")
    expect(page.get_by_role("img", name="Time to first token (streams)").locator("canvas")).to_have_count(1)
    shot(page, "02-overview")


def test_create_a_token_and_use_it(page):
    go(page, "tokens", "Tokens")
    page.get_by_role("button", name="Create token").click()
    dialog = page.get_by_role("dialog", name="Create a token")
    dialog.get_by_label("Name").fill("made-in-the-browser")
    dialog.get_by_label("Budget (USD)").fill("5")
    dialog.get_by_label("Requests per minute").fill("100")
    dialog.get_by_role("button", name="Create").click()
    secret = page.locator("[data-secret=token]")
    expect(secret).to_be_visible()
    token = secret.inner_text().strip()
    assert token.startswith("sy-"), token
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    shot(page, "03-tokens-created")

    request = urllib.request.Request(
        f"{URL}/v1/chat/completions",
        data=json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        answer = json.load(response)
    assert answer["choices"][0]["message"]["content"]

    # The list shows it, found by search, with its budget.
    page.reload()
    page.get_by_label("Search tokens").fill("made-in")
    rows = page.get_by_role("table", name="Tokens").get_by_role("row")
    expect(rows).to_have_count(2)  # header + the token
    expect(rows.nth(1)).to_contain_text("made-in-the-browser")
    expect(rows.nth(1)).to_contain_text("of $5.00")
    STATE["token"] = token


def test_edit_a_tokens_limits_and_rotate_it(page):
    go(page, "tokens", "Tokens")
    page.get_by_role("button", name="Edit made-in-the-browser").click()
    dialog = page.get_by_role("dialog", name="Edit made-in-the-browser")
    dialog.get_by_label("Requests per minute").fill("50")
    dialog.get_by_role("button", name="Save limits").click()
    row = page.get_by_role("table", name="Tokens").get_by_role("row").filter(has_text="made-in-the-browser")
    expect(row).to_contain_text("50 rpm")
    # Only the changed field was sent: the budget is untouched.
    expect(row).to_contain_text("of $5.00")

    page.get_by_role("button", name="Rotate made-in-the-browser").click()
    dialog = page.get_by_role("dialog", name="Rotate made-in-the-browser")
    dialog.get_by_label("Grace period for the old secret (seconds)").fill("0")
    dialog.get_by_role("button", name="Rotate").click()
    secret = page.locator("[data-secret=token]")
    expect(secret).to_contain_text("sy-")
    assert secret.inner_text().strip() != STATE["token"]


def test_disable_a_key_and_see_its_state_change(page):
    go(page, "providers", "Providers and keys")
    keys = page.get_by_role("table", name="Keys of mock")
    row = keys.get_by_role("row").filter(has_text=KEY_ID)
    expect(row).to_contain_text("healthy")
    # Key ids are per provider (the failover provider has one of the same id).
    row.get_by_role("button", name=f"Disable key {KEY_ID}").click()
    expect(row).to_contain_text("disabled from the browser test")
    expect(row.get_by_text("disabled", exact=True)).to_be_visible()
    expect(row.get_by_role("button", name=f"Enable key {KEY_ID}")).to_be_visible()
    # The offline demo kind can be added from the page: no base URL.
    page.get_by_role("button", name="Add provider").click()
    dialog = page.get_by_role("dialog", name="Add a provider")
    dialog.get_by_label("Name").fill("demo")
    dialog.get_by_label("Kind").select_option("echo")
    dialog.get_by_label("Models (comma separated)").fill("demo-echo")
    dialog.get_by_label("First API key (optional)").fill("unused")
    dialog.get_by_role("button", name="Add provider").click()
    demo = page.get_by_role("region", name="Provider demo")
    expect(demo).to_contain_text("echo · in-process")
    expect(page.get_by_role("table", name="Keys of demo")).to_contain_text("healthy")
    shot(page, "04-providers")
    # The overview calls the key out.
    go(page, "overview", "Overview")
    expect(page.get_by_role("table", name="Keys not healthy")).to_contain_text(KEY_ID)


def test_every_other_page_renders(page):
    go(page, "users", "Users")
    page.get_by_role("button", name="Create user").click()
    dialog = page.get_by_role("dialog", name="Create a user")
    dialog.get_by_label("Name").fill("alice")
    dialog.get_by_role("button", name="Save").click()
    page.get_by_role("button", name="Top up alice").click()
    dialog = page.get_by_role("dialog", name="Top up alice")
    dialog.get_by_label("Amount (USD)").fill("12.5")
    dialog.get_by_label("Note").fill("from the browser test")
    dialog.get_by_role("button", name="Save").click()
    users = page.get_by_role("table", name="Users")
    expect(users.get_by_role("row").filter(has_text="alice")).to_contain_text("$12.50")
    page.get_by_role("row").filter(has_text="alice").get_by_role("button", name="Billing").click()
    expect(page.get_by_role("table", name="Billing records")).to_contain_text("from the browser test")
    shot(page, "05-users")

    go(page, "logs", "Request logs")
    logs = page.get_by_role("table", name="Request logs")
    expect(logs.get_by_role("row").nth(1)).to_be_visible()
    logs.get_by_role("row").nth(1).click()
    details = page.get_by_role("region", name="Request details")
    expect(details).to_contain_text("Attempts")
    expect(details).to_contain_text("Time to first token")
    # The request that failed over lists both keys it tried, in order.
    page.get_by_label("Model").fill(FAILOVER_MODEL)
    page.get_by_role("button", name="Filter").click()
    expect(logs.get_by_role("row")).to_have_count(2)
    logs.get_by_role("row").nth(1).click()
    attempts = page.get_by_role("table", name="Attempts")
    expect(attempts.get_by_role("row")).to_have_count(3)
    expect(attempts.get_by_role("row").nth(1)).to_contain_text("upstream_failed")
    expect(attempts.get_by_role("row").nth(2)).to_contain_text("ok")
    shot(page, "07-log-details")
    page.get_by_label("Model").fill("")
    # Filters reach the API: a status nobody got matches nothing.
    page.get_by_label("Status").select_option("5xx")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No request matches.")).to_be_visible()
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(logs.get_by_role("row").nth(1)).to_be_visible()
    shot(page, "06-logs")

    go(page, "prices", "Prices")
    expect(page.get_by_role("table", name="Prices")).to_contain_text(MODEL)
    # The seeded media list prices show their unit rates (whisper-1: $0.006 a minute).
    expect(page.get_by_role("table", name="Prices")).to_contain_text("$0.0001 / audio s")
    expect(page.get_by_role("table", name="Unpriced models")).to_contain_text("mock-unpriced")
    shot(page, "07-prices")

    go(page, "oplog", "Operation log")
    oplog = page.get_by_role("table", name="Operation log")
    expect(oplog).to_contain_text("token.create")
    expect(oplog).to_contain_text("provider_key.disable")
    shot(page, "08-oplog")

    page.emulate_media(color_scheme="dark")
    go(page, "overview", "Overview")
    expect(page.get_by_role("img", name="Requests and errors").locator("canvas")).to_have_count(1)
    shot(page, "09-overview-dark")
    page.emulate_media(color_scheme="light")


def test_log_out_and_the_pages_need_a_login_again(page, context):
    go(page, "tokens", "Tokens")
    old = session_cookie(context)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Switchyard — log in")).to_be_visible()
    assert not [c for c in context.cookies() if c["name"] == "switchyard_session"]
    page.goto(f"{URL}/ui#/tokens")
    expect(page.get_by_role("heading", name="Switchyard — log in")).to_be_visible()
    # The session was revoked on the server, not only forgotten here.
    request = urllib.request.Request(
        f"{URL}/admin/tokens", headers={"Cookie": f"switchyard_session={old['value']}"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401


def test_a_viewer_reads_but_its_write_is_refused(page, context):
    page.goto(f"{URL}/ui")
    page.get_by_label("Admin key file").set_input_files(VIEWER_KEY_FILE)
    page.get_by_role("button", name="Log in with key file").click()
    expect(page.get_by_role("heading", name="Overview", exact=True, level=1)).to_be_visible()
    go(page, "tokens", "Tokens")
    # Reading works: the operator's token is listed.
    expect(page.get_by_role("table", name="Tokens")).to_contain_text("made-in-the-browser")
    page.get_by_role("button", name="Create token").click()
    dialog = page.get_by_role("dialog", name="Create a token")
    dialog.get_by_label("Name").fill("made-by-a-viewer")
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Not allowed (403)").first).to_be_visible()
    expect(page.get_by_text("operator").first).to_be_visible()
    shot(page, "10-viewer-refused")
    # The refused dialog stays open with its message; close it, log out.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Switchyard — log in")).to_be_visible()


def test_nothing_was_blocked_or_broken():
    assert not PROBLEMS, PROBLEMS
