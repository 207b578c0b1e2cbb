"""The admin console in a real headless Chromium (Debian's), driven by Playwright for
Python with the system browser (no browser download).

Run by tests/tests/console.rs, which starts a node over TLS with an admin and a viewer
token and answers on stdin: this script prints JSON lines (`created` with the phone's
id, SIP user and the password read off the page; `register`, asking for the phone to
register; `done`) and waits for a line back where the flow needs the phone.

    console_check.py BASE_URL ADMIN_TOKEN VIEWER_TOKEN EDGE_LINE AXE_JS SHOTS_DIR

The flow, as an administrator would click it: log in; create an edge group, a site, a
base settings profile (a value out of range first: the inline message) and a phone; see
its password once (gone after a reload); watch its row turn OPERATIONAL without a
reload while the phone registers; restart it; import a CSV and download the report; a
viewer sees no edit control and its forged POST gets 403; an axe-core scan of every
page finds no serious or critical violation; a screenshot of each page at 1280 px and
at a phone's width; log out.
"""

import json
import os
import re
import sys
import tempfile

from playwright.sync_api import expect, sync_playwright

BASE, ADMIN, VIEWER, EDGE_LINE, AXE, SHOTS = sys.argv[1:7]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = ["/phones", "/base-settings", "/sites", "/edge-groups", "/users", "/trunks", "/media-servers", "/import", "/status", "/audit"]


def say(**event):
    print(json.dumps(event), flush=True)


def wait_for(word):
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit(f"expected {word!r} from the test, got {line!r}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def login(context, token):
    page = context.new_page()
    resp = page.goto(BASE + "/phones")
    check(page.url.startswith(BASE + "/login"), f"not sent to the login page: {page.url}")
    h = resp.headers
    check("script-src 'self'" in h.get("content-security-policy", ""), f"CSP: {h}")
    check(h.get("x-frame-options") == "DENY", f"X-Frame-Options: {h}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r".*/phones$"))
    cookie = next(c for c in context.cookies() if c["name"] == "dialtone_session")
    check(cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", f"cookie: {cookie}")
    return page


def shoot(page, name):
    for width, label in [(1280, "desktop"), (390, "phone")]:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=os.path.join(SHOTS, f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def main():
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            flow(browser)
        except BaseException:
            # What each page showed when the flow stopped, for whoever reads the failure.
            for i, ctx in enumerate(browser.contexts):
                for j, p in enumerate(ctx.pages):
                    shot = os.path.join(SHOTS, f"failure-{i}-{j}.png")
                    p.screenshot(path=shot, full_page=True)
                    print(f"page {p.url} (screenshot {shot}):\n{p.inner_text('body')[:2000]}", file=sys.stderr)
            raise
        browser.close()


def flow(browser):
    if True:
        admin_ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        page = login(admin_ctx, ADMIN)

        # An edge group with this node as its edge: shown up.
        page.get_by_role("link", name="Edge groups").click()
        page.get_by_label("Name", exact=True).fill("Main")
        page.get_by_label(re.compile("^Edges, one per line")).fill(EDGE_LINE)
        page.get_by_role("button", name="Add edge group").click()
        expect(page.locator("section", has_text="Main").get_by_text("up", exact=True)).to_be_visible()

        # A site on it.
        page.get_by_role("link", name="Sites").click()
        page.get_by_label("Name", exact=True).fill("HQ")
        page.get_by_label("Edge group").select_option("main")
        page.get_by_role("button", name="Add site").click()
        expect(page.get_by_role("rowheader", name="HQ")).to_be_visible()

        # A base settings profile from the generic SIP template: a DSCP out of range is
        # refused next to its field, then saved.
        page.get_by_role("link", name="Base Settings").click()
        page.get_by_label("Phone meta-base").select_option("generic_sip")
        page.get_by_role("button", name="Add").click()
        expect(page.get_by_label("Registration period (seconds, 60-86400)")).to_have_value("3600")
        page.get_by_label("Name", exact=True).fill("Desk")
        dscp = page.get_by_label("SIP DSCP (0-63)")
        dscp.fill("99")
        page.get_by_role("button", name="Save").click()
        expect(dscp).to_have_attribute("aria-invalid", "true")
        expect(page.locator(".field-error")).to_contain_text("outside 0-63")
        expect(page.get_by_label("Name", exact=True)).to_have_value("Desk")
        dscp.fill("46")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="Desk")).to_be_visible()
        expect(page.get_by_role("row", name=re.compile(r"sip_dscp\s+46"))).to_be_visible()

        # A phone: its password is shown once.
        page.get_by_role("link", name="Phones").click()
        page.get_by_role("link", name="Create phone").click()
        page.get_by_label("Name", exact=True).fill("Desk 1")
        page.get_by_label("Site").select_option("hq")
        page.get_by_label("Base settings").select_option("desk")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_role("heading", name="Passwords: shown this once")).to_be_visible()
        phone_id = page.url.rsplit("/", 1)[1]
        password = page.locator(".secret-value").first.input_value()
        user = page.locator("section", has_text="How to Register").locator("dd code").nth(1).inner_text()
        check(len(password) >= 12, f"password {password!r}")
        page.get_by_role("button", name="Copy").first.click()
        shoot(page, "phone-created")
        page.reload()
        expect(page.get_by_role("heading", name="Passwords: shown this once")).to_have_count(0)
        check(password not in page.content(), "the password is shown again after a reload")
        say(event="created", id=phone_id, user=user, password=password)

        # Its row turns OPERATIONAL while the page stays loaded.
        page.get_by_role("link", name="Phones").click()
        cell = page.locator(f'[data-status-for="{phone_id}"]')
        expect(cell).to_contain_text("OFFLINE")
        page.evaluate("window.__notReloaded = true")
        say(event="register")
        wait_for("registered")
        expect(cell).to_contain_text("OPERATIONAL", timeout=20_000)
        check(page.evaluate("window.__notReloaded === true"), "the page was reloaded")
        shoot(page, "phones")

        # Restart it from the list (bulk), then from its page.
        page.get_by_label("Select Desk 1").check()
        page.get_by_label("With the selected phones").select_option("restart")
        page.get_by_role("button", name="Apply").click()
        expect(page).to_have_url(re.compile(r".*/phones$"))
        page.get_by_role("link", name="Desk 1").click()
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Restart").click()
        expect(page).to_have_url(re.compile(f".*/phones/{phone_id}$"))
        shoot(page, "phone")

        # Import: one good row, one naming a site that does not exist; the report.
        csv_path = os.path.join(tempfile.mkdtemp(), "phones.csv")
        with open(csv_path, "w") as f:
            f.write("name,kind,site_id,base_settings_id,hardware_id,lines,assignment,remote_address,disabled\n")
            f.write("Lobby,unmanaged,hq,desk,,lobby=Lobby,,,false\n")
            f.write("Nowhere,unmanaged,atlantis,desk,,nowhere,,,false\n")
        page.get_by_role("link", name="Import / Export").click()
        page.get_by_label("CSV file").set_input_files(csv_path)
        page.get_by_role("button", name="Import").click()
        expect(page.get_by_role("status")).to_contain_text("2 rows: 1 created, 1 failed")
        with page.expect_download() as dl:
            page.get_by_role("link", name=re.compile("Download the report")).click()
        report = open(dl.value.path()).read()
        check("created" in report and "failed" in report and "atlantis" in report, f"report: {report}")
        shoot(page, "import")
        with page.expect_download() as dl:
            page.get_by_role("link", name="Download every phone (CSV)").click()
        export = open(dl.value.path()).read()
        check("Desk 1" in export and "Lobby" in export, f"export: {export}")

        # A user, and the phone assigned to her (the User tab).
        page.get_by_role("link", name="Users").click()
        page.get_by_label("Name", exact=True).fill("Alice")
        page.get_by_label("Site").select_option("hq")
        page.get_by_label("Extension (2-10 digits)").fill("301")
        page.get_by_role("button", name="Add user").click()
        expect(page.get_by_role("rowheader", name="Alice")).to_be_visible()
        page.goto(f"{BASE}/phones/{phone_id}")
        page.get_by_label("User", exact=True).check()
        page.get_by_label("User id (User)").fill("alice")
        page.get_by_role("button", name="Save assignment").click()
        page.get_by_role("link", name="Phones").click()
        expect(page.get_by_role("row", name=re.compile("Desk 1")).get_by_role("cell", name="User alice")).to_be_visible()

        # The phone's overrides: a value out of range is named, then two overrides saved;
        # an empty field inherits.
        page.goto(f"{BASE}/phones/{phone_id}")
        page.get_by_role("link", name="Edit overrides").click()
        rtp = page.get_by_label("RTP DSCP (0-63)")
        expect(rtp).to_have_value("")
        rtp.fill("77")
        page.get_by_role("button", name="Save overrides").click()
        expect(rtp).to_have_attribute("aria-invalid", "true")
        expect(page.locator(".field-error")).to_contain_text("outside 0-63")
        rtp.fill("34")
        page.get_by_label("Message-waiting indication").select_option("off")
        page.get_by_role("button", name="Save overrides").click()
        expect(page).to_have_url(re.compile(f".*/phones/{phone_id}$"))
        overrides = page.locator("#overrides")
        expect(overrides.get_by_role("row", name=re.compile(r"media_dscp\s+34"))).to_be_visible()
        expect(overrides.get_by_role("row", name=re.compile(r"mwi_enabled\s+false"))).to_be_visible()
        expect(overrides.get_by_role("row", name=re.compile("sip_dscp"))).to_have_count(0)

        # A second line: its password shown once; then removed again.
        page.goto(f"{BASE}/phones/{phone_id}")
        page.get_by_label("Line label").fill("Second")
        page.get_by_role("button", name="Add line").click()
        expect(page.get_by_role("heading", name="Passwords: shown this once")).to_be_visible()
        expect(page.get_by_text(re.compile(r"Line 2 \(.*\) SIP password"))).to_be_visible()
        expect(page.get_by_role("cell", name="Second", exact=True)).to_be_visible()
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Remove line 2").click()
        expect(page.get_by_role("cell", name="Second", exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Remove line 1")).to_have_count(0)

        # The profile edited in place; a form read at an older version gets 409.
        page.goto(BASE + "/base-settings/desk")
        page.get_by_role("link", name="Edit", exact=True).click()
        period = page.get_by_label("Registration period (seconds, 60-86400)")
        expect(period).to_have_value("3600")
        period.fill("1800")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("row", name=re.compile(r"registration_period_s\s+1800"))).to_be_visible()
        csrf_now = page.locator('form[action="/logout"] input[name="_csrf"]').input_value()
        stale = page.request.post(f"{BASE}/base-settings/desk", form={"_csrf": csrf_now, "version": "1", "name": "Desk", "sip_dscp": "46"}, headers={"Origin": BASE}, max_redirects=0)
        check(stale.status == 409, f"a stale edit: {stale.status}")

        # Migrate the profile's phones to another one: the dry run's diff, then Apply.
        made = page.request.post(
            f"{BASE}/api/v2/telephony/providers/edges/phonebasesettings",
            data={"name": "Desk B", "phoneMetaBase": {"id": "generic_sip"},
                  "properties": {"phone_sip_dscp": {"value": {"instance": 40}}}},
            headers={"Authorization": f"Bearer {ADMIN}"})
        check(made.status == 200, f"a second profile: {made.status} {made.text()}")
        page.goto(BASE + "/base-settings/desk")
        page.get_by_label("Target profile").select_option("desk-b")
        page.get_by_role("button", name="Preview the changes").click()
        expect(page.get_by_role("status")).to_contain_text("2 phones of Desk to Desk B: 2 would move")
        expect(page.get_by_role("row", name=re.compile(r"^sip_dscp\s+46\s+40\s+changed"))).to_have_count(2)
        shoot(page, "migrate-preview")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_role("status")).to_contain_text("2 moved")

        # The media server dialtonectl created.
        page.get_by_role("link", name="Media servers").click()
        expect(page.get_by_role("row", name=re.compile("RTP East"))).to_contain_text("127.0.0.1:22222")

        # Status counts and the audit log.
        page.get_by_role("link", name="Status").click()
        expect(page.get_by_role("row", name=re.compile("^HQ"))).to_be_visible()
        page.get_by_role("link", name="Audit log").click()
        expect(page.get_by_role("row", name=re.compile(r"admin\s+grpc\s+CreateMediaServer\s+ok"))).to_be_visible()
        for what in ["create edge group", "create site", "create base settings", "create phone", "restart", "import phones", "migrate phones", "create user", "assign phone", "edit phone overrides", "edit base settings", "add line", "remove line"]:
            expect(page.get_by_role("cell", name=what, exact=True).first).to_be_visible()

        # Every page: screenshots, and axe-core finds nothing serious.
        axe_ctx = browser.new_context(ignore_https_errors=True, bypass_csp=True, viewport={"width": 1280, "height": 900})
        axe_page = login(axe_ctx, ADMIN)
        scanned = 0
        for path in PAGES + [f"/phones/{phone_id}", f"/phones/{phone_id}/overrides", "/phones/new", "/base-settings/new?meta=generic_sip", "/base-settings/desk", "/base-settings/desk/edit"]:
            axe_page.goto(BASE + path)
            axe_page.add_script_tag(path=AXE)
            result = axe_page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
            bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
            check(not bad, f"{path}: " + json.dumps([(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in bad]))
            scanned += 1
            page.goto(BASE + path)
            name = path.replace(phone_id, "detail").split("?")[0].strip("/").replace("/", "-")
            shoot(page, name)
        axe_page.goto(BASE + "/login")
        axe_page.add_script_tag(path=AXE)
        result = axe_page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        check(not [v for v in result["violations"] if v["impact"] in ("serious", "critical")], "login page")

        # A viewer: no edit controls; a forged POST is refused.
        viewer_ctx = browser.new_context(ignore_https_errors=True)
        vpage = login(viewer_ctx, VIEWER)
        expect(vpage.get_by_role("link", name="Create phone")).to_have_count(0)
        expect(vpage.locator('input[name="ids"]')).to_have_count(0)
        vpage.get_by_role("link", name="Desk 1").click()
        expect(vpage.get_by_role("button", name="Restart")).to_have_count(0)
        expect(vpage.get_by_role("button", name="Reset password")).to_have_count(0)
        expect(vpage.get_by_role("button", name="Delete phone")).to_have_count(0)
        expect(vpage.get_by_role("link", name="Edit overrides")).to_have_count(0)
        vpage.get_by_role("link", name="Sites").click()
        expect(vpage.get_by_role("button", name="Add site")).to_have_count(0)
        shoot(vpage, "viewer-sites")
        csrf = vpage.locator('form[action="/logout"] input[name="_csrf"]').input_value()
        origin = {"Origin": BASE}
        forged = vpage.request.post(f"{BASE}/phones/{phone_id}/act", form={"_csrf": csrf, "act": "restart"}, headers=origin, max_redirects=0)
        check(forged.status == 403, f"a viewer's restart: {forged.status}")
        forged = vpage.request.post(f"{BASE}/sites", form={"_csrf": csrf, "name": "Rogue", "edge_group": "main"}, headers=origin, max_redirects=0)
        check(forged.status == 403, f"a viewer's new site: {forged.status}")
        check(vpage.goto(f"{BASE}/phones/{phone_id}/overrides").status == 403, "a viewer's overrides form")
        check(vpage.goto(f"{BASE}/base-settings/desk/edit").status == 403, "a viewer's profile form")
        # Without the CSRF token, or from another site, even the admin is refused.
        no_csrf = page.request.post(f"{BASE}/sites", form={"name": "Rogue", "edge_group": "main"}, headers=origin, max_redirects=0)
        check(no_csrf.status == 403, f"no CSRF token: {no_csrf.status}")
        admin_csrf = page.locator('form[action="/logout"] input[name="_csrf"]').input_value()
        cross = page.request.post(f"{BASE}/sites", form={"_csrf": admin_csrf, "name": "Rogue", "edge_group": "main"}, headers={"Origin": "https://evil.example"}, max_redirects=0)
        check(cross.status == 403, f"cross-site: {cross.status}")
        page.get_by_role("link", name="Sites").click()
        expect(page.get_by_role("rowheader", name="Rogue")).to_have_count(0)

        # Logout ends the session.
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile(r".*/login$"))
        page.goto(BASE + "/phones")
        check(page.url.startswith(BASE + "/login"), "still logged in after logout")

        # Guessing tokens: after 10 failures from this address, even the right token is
        # refused for a while (429).
        for i in range(10):
            r = page.request.post(f"{BASE}/login", form={"token": f"dt_wrong_{i}", "next": "/phones"}, headers=origin, max_redirects=0)
            check(r.status == 401, f"a wrong token: {r.status}")
        r = page.request.post(f"{BASE}/login", form={"token": ADMIN, "next": "/phones"}, headers=origin, max_redirects=0)
        check(r.status == 429, f"after 10 failures: {r.status}")
        say(event="done", scanned=scanned)


if __name__ == "__main__":
    main()
