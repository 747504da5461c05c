"""The case workers' web page in a real browser (headless Chromium from Debian's packages, driven
by Selenium through the system chromedriver; no browser is ever downloaded), against a mesh of
real processes on the embedded broker, each gateway serving HTTPS with a certificate of a test
CA (the browser trusts exactly that certificate's key, through Chromium's
--ignore-certificate-errors-spki-list; the API clients trust the test CA): sign in at the
hotline, record consent, send a referral to the shelter after seeing the preview, sign in at the
shelter, accept it, and see the status arrive back at the hotline. Screenshots of the main pages
go to test-artifacts/web/; with REFMESH_UPDATE_SCREENSHOTS=1 the copies in gateways/web/screenshots/
that docs/case-workers.md shows are replaced too.

Without chromium and chromium-driver (`apt-get install chromium chromium-driver`, which
.ci/run does) the test is skipped and says so."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from gateways.client import GatewayError
from devmesh.supervise import wait_until
from devmesh.testca import spki_sha256
from tests.integration.meshfix import start_mesh

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HOTLINE, SHELTER, NCC = "BH/GOV/HOTLINE", "BH/GOV/SHELTER", "BH/GOV/NCCTIP"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
DOCS_SHOTS = ROOT / "gateways" / "web" / "screenshots"
PASSWORD = "a long synthetic passphrase"
# docs/case-workers.md shows these (small viewport shots); every shot is kept under test-artifacts/
FOR_DOCS = {"01-sign-in", "02-inbox", "03-referral-detail", "04-send-preview",
              "05-consent", "06-outbox-timeline", "07-arabic-outbox"}

missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
except ImportError:  # pragma: no cover - the test extra installs it
    missing.append("the selenium package (pip install -e '.[test]')")

pytestmark = pytest.mark.skipif(
    bool(missing), reason="browser test skipped: not installed: " + ", ".join(missing)
    + " (apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def mesh(kafka, tmp_path_factory):
    m = start_mesh(tmp_path_factory.mktemp("web"), kafka, uuid.uuid4().hex[:6],
                   [HOTLINE, SHELTER], [NCC], https=True)
    runner = CliRunner()
    # amal supervises at the hotline (she sees what a program sent there too) and is a case
    # worker at the shelter (a received referral reaches her through the default team)
    for agency, role in ((HOTLINE, "supervisor"), (SHELTER, "caseworker")):
        added = runner.invoke(cli, ["users", "add", "amal", "--config",
                                    str(m.files.gateway_config(m.id(agency))),
                                    "--password-env", "WEB_TEST_PASSWORD", "--role", role],
                              env={"WEB_TEST_PASSWORD": PASSWORD})
        assert added.exit_code == 0, added.output
    yield m
    m.running.stop()


@pytest.fixture(scope="module")
def browser(mesh):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="refmesh-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                 "--lang=en-GB", f"--user-data-dir={profile}",
                 # trust the gateways' test certificate (by its key), and nothing else unusual
                 f"--ignore-certificate-errors-spki-list={spki_sha256(mesh.tls.broker)}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class Shots:
    def __init__(self, driver) -> None:
        self.driver = driver
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.update = os.environ.get("REFMESH_UPDATE_SCREENSHOTS") == "1"

    def __call__(self, name: str, height: int = 900) -> None:
        path = ARTIFACTS / f"{name}.png"
        if height != 900:
            self.driver.set_window_size(1200, height)
        self.driver.save_screenshot(str(path))
        if height != 900:
            self.driver.set_window_size(1200, 900)
        if self.update and name in FOR_DOCS:
            DOCS_SHOTS.mkdir(exist_ok=True)
            small(path, DOCS_SHOTS / path.name)


def small(source: Path, target: Path) -> None:
    """A copy for docs/case-workers.md in 256 colours (a third of the bytes; text stays crisp)."""
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib; without it, copy as it is
        shutil.copyfile(source, target)
        return
    with Image.open(source) as image:
        image.convert("RGB").quantize(256).save(target, optimize=True)


def sign_in(driver, url: str) -> None:
    driver.get(url + "/signin")
    driver.find_element(By.ID, "username").send_keys("amal")
    driver.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    wait_until(lambda: driver.current_url.endswith("/inbox"), 15, "the inbox after sign-in")


def tick(driver, name: str, *values: str) -> None:
    for value in values:
        box = driver.find_element(By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"]')
        if not box.is_selected():
            box.click()


def fill(driver, values: dict) -> None:
    for name, value in values.items():
        element = driver.find_element(By.NAME, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        elif element.get_attribute("type") == "date":
            # a date input types in the browser's locale: set the ISO value instead
            driver.execute_script("arguments[0].value = arguments[1]", element, value)
        else:
            element.clear()
            element.send_keys(value)


def click_for(driver, element, expected: str) -> None:
    """Click a submit button and wait for the page that says ``expected``."""
    element.click()
    wait_until(lambda: expected in driver.page_source, 20, f"a page saying {expected!r}")


def state_at(client, rid: str) -> str:
    try:
        return client.show(rid)["state"]
    except GatewayError:
        return ""


def test_a_referral_from_the_hotline_to_the_shelter_and_back_in_a_browser(mesh, browser):
    driver, shot = browser, Shots(browser)
    hotline_api, shelter_api = mesh.client(HOTLINE), mesh.client(SHELTER)
    hotline, shelter = hotline_api.url, shelter_api.url

    # sign in at the hotline; the first Tab reaches the skip link (keyboard first)
    assert hotline.startswith("https://") and shelter.startswith("https://")
    driver.get(hotline + "/signin")
    assert driver.execute_script("return window.isSecureContext") is True
    shot("01-sign-in")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "Skip to the main content"
    sign_in(driver, hotline)
    assert "Signed in as amal" in driver.page_source
    cookies = driver.get_cookies()  # the session's, the language's: Secure and HttpOnly
    assert cookies and all(c["secure"] and c["httpOnly"] for c in cookies), cookies
    # meanwhile a program sends a referral for a person with no consent: the domain refuses it
    refused = hotline_api.submit(mesh.referral(2, HOTLINE, SHELTER))["referralId"]

    # record the person's consent
    driver.get(hotline + "/consents")
    fill(driver, {"subjectId": "subj-web-0001", "language": "tgl", "noticeVersion": "2026-01"})
    tick(driver, "purposes", "Services", "Referral")
    tick(driver, "recipientRoles", "CentralGovernmentOrganisation", "NGO")
    tick(driver, "dataCategories", "Identity", "Demographics", "SupportNeeds",
         "ReferralDetails")
    click_for(driver, driver.find_element(By.CSS_SELECTOR, "#record button[type=submit]"),
              "is recorded and on its way to the policy domain")
    assert "subj-web-0001" in driver.page_source
    shot("05-consent", height=1250)

    # send a referral to the shelter: the preview comes first
    driver.get(hotline + "/send")
    shelter_id = mesh.id(SHELTER)
    fill(driver, {
        "recipientAgency": shelter_id, "purpose": "Services", "trmStage": "FirstAssistance",
        "caseRef": "HL-2026-00077", "person.firstName": "Maricel",
        "person.secondName": "Example", "person.birthdate": "1996-03-02",
        "person.gender": "Feminine", "person.citizenship": "PH",
        "person.primaryLanguage": "tgl", "person.identityNumber": "P0000000A",
        "person.mobilePhone": "+97300000001", "victim.traffickingStatus":
            "PossibleVictimOfTrafficking", "victim.caseComment": "Employer kept the passport.",
        "needs.safetyRisk": "High", "needs.interpreterLanguage": "tgl",
        "service.urgency": "Urgent", "service.dueDate": "2026-12-24",
        "service.details": "Arrives with one small bag."})
    Select(driver.find_element(By.NAME, "consentId")).select_by_index(1)
    tick(driver, "victim.typeOfExploitation", "ForcedLabour")
    tick(driver, "needs.supportTypes", "SocialCare", "Health")
    tick(driver, "service.services", "Shelter", "Interpreter")
    shot("08-send-form")
    click_for(driver, driver.find_element(By.CSS_SELECTOR, 'button[value="preview"]'),
              'id="preview"')
    preview = driver.find_element(By.ID, "preview").text
    assert "The policy allows this referral" in preview and "shelter-services" in preview
    withheld = preview.split("will be withheld")[1]
    assert "Identity or passport number" in withheld and "Case comment" in withheld
    shot("04-send-preview", height=1400)
    click_for(driver, driver.find_element(By.CSS_SELECTOR, 'button[value="send"]'),
              "is stored and on its way to")
    rid = driver.current_url.split("#")[0].rsplit("/", 1)[1]
    wait_until(lambda: state_at(hotline_api, rid) == "received", 60, "the received status")

    # at the shelter: the inbox, the referral as received (minimised), accept it
    sign_in(driver, shelter)
    assert "Maricel" not in driver.page_source  # the inbox lists, it does not show the case
    assert rid in driver.page_source
    shot("02-inbox")
    click_for(driver, driver.find_element(By.CSS_SELECTOR, f'a[href="/referrals/{rid}"]'),
              "Change the status")
    page = driver.page_source
    assert "Maricel" in page and ("25-29" in page or "30-34" in page)  # an age band only
    assert "1996-03-02" not in page
    assert "P0000000A" not in page and "+97300000001" not in page
    assert "Employer kept the passport" not in page
    assert "other fields were withheld by the policy of" in page
    shot("03-referral-detail", height=1150)
    accept = driver.find_element(By.CSS_SELECTOR, 'input[name="state"][value="accepted"]')
    click_for(driver, accept.find_element(By.XPATH, "..").find_element(By.TAG_NAME, "button"),
              "Status changed to “Accepted”")
    wait_until(lambda: state_at(hotline_api, rid) == "accepted", 60, "accepted at the hotline")
    assert state_at(shelter_api, rid) == "accepted"
    assert "Assigned to" in driver.page_source and "team intake" in driver.page_source
    assert 'href="/access"' not in driver.page_source  # a case worker's menu has no record
    assert driver.get(shelter + "/access") is None and "Not for your role" in driver.page_source

    # back at the hotline: the timeline shows the loop closing, and the refusal with its reason
    wait_until(lambda: state_at(hotline_api, refused) == "refused", 60, "the refusal")
    driver.get(hotline + "/outbox")
    cards = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "article.sent")]
    assert len(cards) == 2
    for step in ("Sent", "Received", "Accepted"):
        assert step in cards[0], step
    assert "Refused by policy" in cards[1] and "consent_missing" in cards[1]
    assert "the policy domain holds no consent for this person" in cards[1]
    shot("06-outbox-timeline")
    # the supervisor reads the record of access: amal's consent and referral, ids only
    driver.get(hotline + "/access")
    record = driver.page_source
    assert "hash chain holds" in record and rid in record and "Maricel" not in record
    driver.get(hotline + "/outbox")
    click_for(driver, driver.find_element(By.CSS_SELECTOR, 'form.lang button[value="ar"]'),
              'dir="rtl"')
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
    assert "الإحالات المرسلة" in driver.page_source and "قُبلت" in driver.page_source
    shot("07-arabic-outbox")
