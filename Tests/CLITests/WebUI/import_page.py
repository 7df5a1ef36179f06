"""Drives the Import page in headless Chromium (Selenium, chromium-driver from Debian) the way a
person would, and prints what that person would see as one JSON object on the last line of stdout.

    python import_page.py SCENARIO CONFIG.json

The Swift test (ServeWebUITests) starts `mailporter serve` and the Dovecots, writes CONFIG, runs a
scenario and checks the observations (and the destination mailboxes) itself. A wait that runs out
exits 1 with what the page showed and a screenshot, never a silent pass. Chromium that cannot start
is an error too.
"""

import json
import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

CONFIG = json.load(open(sys.argv[2], encoding="utf-8"))
BASE = CONFIG["base_url"]
SHOTS = CONFIG.get("screenshot_dir") or tempfile.mkdtemp()


def start_browser(width=1280, height=900):
    options = webdriver.ChromeOptions()
    options.binary_location = CONFIG.get("chromium", "/usr/bin/chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tempfile.mkdtemp(prefix='mp-chromium-')}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CONFIG.get("chromedriver", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


driver = start_browser()
observed = {"console": []}


def fail(message):
    path = os.path.join(SHOTS, f"failure-{sys.argv[1]}.png")
    try:
        driver.save_screenshot(path)
        body = driver.find_element(By.TAG_NAME, "body").text
    except Exception as error:  # the browser itself may be gone
        body = f"(page unreadable: {error})"
    sys.stderr.write(f"FAIL: {message}\nscreenshot: {path}\npage text:\n{body[:6000]}\n")
    driver.quit()
    sys.exit(1)


def wait(condition, what, timeout=30):
    try:
        # The page re-renders a view on every poll: an element read mid-render is read again.
        return WebDriverWait(
            driver, timeout, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException]
        ).until(condition)
    except TimeoutException:
        fail(f"timed out after {timeout} s waiting for {what}")


def visible(selector, timeout=30):
    return wait(EC.visibility_of_element_located((By.CSS_SELECTOR, selector)), selector, timeout)


def text_of(selector):
    return driver.find_element(By.CSS_SELECTOR, selector).text


def type_into(selector, value):
    element = visible(selector)
    element.clear()
    element.send_keys(value)
    return element


def storage():
    return driver.execute_script(
        "return {session: Object.assign({}, sessionStorage), local: Object.assign({}, localStorage),"
        " cookie: document.cookie, urls: performance.getEntriesByType('resource').map(e => e.name).concat([location.href])};"
    )


def collect_console():
    observed["console"] += [
        {"level": entry["level"], "source": entry.get("source", ""), "message": entry["message"]}
        for entry in driver.get_log("browser")
    ]


def sign_in(token):
    driver.get(BASE + "/")
    field = visible("#token")
    field.send_keys(token)
    field.send_keys(Keys.ENTER)  # the keyboard, not a click
    visible("#app")
    wait(lambda d: d.find_element(By.CSS_SELECTOR, "#account-plan").text != "", "the plan")
    return {
        "plan": text_of("#account-plan"),
        "scopes": text_of("#account-scopes"),
        "notice": text_of("#plan-notice") if driver.find_element(By.CSS_SELECTOR, "#plan-notice").is_displayed() else None,
        "tabs": [tab.text for tab in driver.find_elements(By.CSS_SELECTOR, "[role=tab]") if tab.is_displayed()],
        "wizard_shown": driver.find_element(By.CSS_SELECTOR, "#wizard").is_displayed(),
        "storage": storage(),
    }


def no_horizontal_scroll():
    return driver.execute_script(
        "return {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth, inner: window.innerWidth};"
    )


def screenshot(name):
    path = os.path.join(SHOTS, name)
    driver.save_screenshot(path)
    return path


def narrow_check(name):
    driver.set_window_size(360, 900)
    time.sleep(0.5)
    # Chromium's headless window may keep a minimum width; the viewport is what counts.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 360, "height": 900, "deviceScaleFactor": 1, "mobile": True}
    )
    time.sleep(0.5)
    result = no_horizontal_scroll()
    result["screenshot"] = screenshot(name)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.set_window_size(1280, 900)
    return result


def scenario_wizard():
    observed["before_sign_in"] = None
    driver.get(BASE + "/")
    visible("#token")
    observed["before_sign_in"] = storage()
    observed["sign_in"] = sign_in(CONFIG["token"])
    source = CONFIG["source"]

    Select(visible("#provider")).select_by_value("gmail")
    observed["gmail_preset"] = {
        "host": driver.find_element(By.ID, "source_host").get_attribute("value"),
        "port": driver.find_element(By.ID, "source_port").get_attribute("value"),
        "security": driver.find_element(By.ID, "source_security").get_attribute("value"),
        "hint": text_of("#provider-hint"),
    }
    Select(visible("#provider")).select_by_value("generic_imap")

    # A validation error: no host for a provider without a preset.
    driver.find_element(By.ID, "source_host").clear()
    type_into("#source_email", source["email"])
    type_into("#source_username", source["username"])
    type_into("#source_password", source["password"])
    driver.find_element(By.ID, "test-connection").click()
    visible("#source_host-error")
    observed["validation"] = {
        "field_error": text_of("#source_host-error"),
        "invalid": driver.find_element(By.ID, "source_host").get_attribute("aria-invalid"),
        "focused": driver.switch_to.active_element.get_attribute("id"),
        "summary": text_of("#test-error"),
    }

    # A wrong password, then the right one.
    type_into("#source_host", source["host"])
    type_into("#source_port", str(source["port"]))
    Select(driver.find_element(By.ID, "source_security")).select_by_value(source["security"])
    type_into("#source_password", "not-the-password")
    driver.find_element(By.ID, "test-connection").click()
    visible("#source_password-error", timeout=60)
    observed["wrong_password"] = {"field_error": text_of("#source_password-error"), "summary": text_of("#test-error")}

    type_into("#source_password", source["password"])
    driver.find_element(By.ID, "test-connection").click()
    visible("#step-folders", timeout=60)
    folders = {}
    for box in driver.find_elements(By.CSS_SELECTOR, "#folder-list input[type=checkbox]"):
        label = driver.find_element(By.CSS_SELECTOR, f"label[for='{box.get_attribute('id')}']")
        folders[box.get_attribute("data-folder")] = label.find_element(By.CSS_SELECTOR, ".folder-count").text
        if box.get_attribute("data-folder") in CONFIG["uncheck_folders"]:
            box.click()
    observed["folders"] = folders
    observed["password_in_page_before_start"] = source["password"] in driver.page_source

    Select(visible("#mailbox_id")).select_by_visible_text(CONFIG["mailbox_email"])
    observed["desktop_wizard_screenshot"] = screenshot("wizard-desktop.png")
    driver.find_element(By.ID, "start-import").click()
    visible("#progress")
    observed["first_status"] = text_of("#progress .status")
    wait(
        lambda d: d.find_element(By.CSS_SELECTOR, "#progress-body .status").text in ("Completed", "Failed", "Cancelled"),
        "a final status",
        timeout=CONFIG.get("timeout", 240),
    )
    observed["final"] = {
        "status": text_of("#progress-body .status"),
        "percent": text_of("#overall-percent"),
        "overall_value": driver.find_element(By.CSS_SELECTOR, "#progress-body .overall progress").get_attribute("value"),
        "facts": text_of("#progress-body .facts"),
        "folders": [
            {
                "name": row.get_attribute("data-folder"),
                "value": row.find_element(By.CSS_SELECTOR, "progress").get_attribute("value"),
                "status": row.find_element(By.CSS_SELECTOR, "td[data-label=Status]").text,
            }
            for row in driver.find_elements(By.CSS_SELECTOR, "#folder-progress tbody tr")
        ],
        "actions": [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#progress-actions button")],
    }
    observed["desktop_progress_screenshot"] = screenshot("progress-desktop.png")
    observed["password_in_page_after_start"] = source["password"] in driver.page_source
    observed["password_fields_after_start"] = [
        driver.find_element(By.ID, name).get_attribute("value") for name in ("source_password", "target_password")
    ]
    observed["narrow_progress"] = narrow_check("progress-360.png")

    # The history lists it with its label.
    driver.find_element(By.ID, "tab-history").click()
    visible("#history-table")
    observed["history"] = [
        {"id": row.get_attribute("data-id"), "status": row.find_element(By.CSS_SELECTOR, ".status").text}
        for row in driver.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    ]
    observed["after"] = storage()
    collect_console()

    driver.find_element(By.ID, "sign-out").click()
    visible("#signin")
    observed["after_sign_out"] = storage()
    collect_console()


def scenario_bulk():
    observed["sign_in"] = sign_in(CONFIG["token"])
    driver.find_element(By.ID, "tab-bulk").send_keys(Keys.ENTER)
    visible("#bulk-form")
    csv = CONFIG["csv"]
    area = visible("#bulk-data")
    # Typed through the page (send_keys of many lines is slow): set as a paste would.
    driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", area, csv)
    source = CONFIG["source"]
    type_into("#bulk-host", source["host"])
    type_into("#bulk-port", str(source["port"]))
    Select(driver.find_element(By.ID, "bulk-security")).select_by_value(source["security"])
    driver.find_element(By.ID, "bulk-preview").click()
    visible("#preview-rows", timeout=60)
    observed["preview"] = {
        "rows": [
            {
                "line": row.get_attribute("data-line"),
                "category": row.get_attribute("data-category"),
                "label": row.find_element(By.CSS_SELECTOR, ".category").text,
            }
            for row in driver.find_elements(By.CSS_SELECTOR, "#preview-rows tbody tr")
        ],
        "counts": {
            element.get_attribute("data-category"): element.find_element(By.TAG_NAME, "dd").text
            for element in driver.find_elements(By.CSS_SELECTOR, "#bulk-counts [data-category]")
        },
        "summary": text_of("#bulk-summary"),
    }
    observed["desktop_preview_screenshot"] = screenshot("bulk-preview-desktop.png")
    observed["narrow_preview"] = narrow_check("bulk-preview-360.png")
    type_into("#bulk-name", "browser batch")
    driver.find_element(By.ID, "bulk-start").click()
    visible("#batch")
    observed["csv_left_in_page"] = driver.find_element(By.ID, "bulk-data").get_attribute("value")

    def batch_status():
        return driver.find_element(By.ID, "batch-status").text

    timeout = CONFIG.get("timeout", 240)
    wait(lambda d: batch_status() in ("Completed", "Completed with errors", "Cancelled"), "the batch's end", timeout)
    wait(lambda d: all(
        row.get_attribute("data-status") in ("completed", "failed", "cancelled")
        for row in d.find_elements(By.CSS_SELECTOR, "#batch-jobs tbody tr")
    ), "every job final", timeout)
    observed["first_end"] = {
        "status": batch_status(),
        "jobs": [
            {"line": row.get_attribute("data-line"), "status": row.get_attribute("data-status"),
             "error": row.find_element(By.CSS_SELECTOR, "td[data-label=Error]").text}
            for row in driver.find_elements(By.CSS_SELECTOR, "#batch-jobs tbody tr")
        ],
        "actions": [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#batch-actions button")],
    }
    observed["desktop_batch_screenshot"] = screenshot("bulk-batch-desktop.png")

    fix = driver.find_elements(By.CSS_SELECTOR, "#batch-jobs tbody tr[data-status=failed] button")
    if fix:
        fix[0].click()
        visible("#password-dialog")
        type_into("#new-password", source["password"])
        driver.find_element(By.ID, "new-password").send_keys(Keys.ENTER)
        wait(lambda d: not d.find_element(By.ID, "password-dialog").is_displayed(), "the dialog to close")
        observed["dialog_password_left"] = driver.find_element(By.ID, "new-password").get_attribute("value")
        retry = wait(
            lambda d: next((b for b in d.find_elements(By.CSS_SELECTOR, "#batch-actions button") if b.text == "Retry failed"), None),
            "Retry failed",
        )
        retry.click()
        wait(lambda d: batch_status() in ("Queued", "In Progress"), "the batch queued again")
        wait(lambda d: batch_status() in ("Completed", "Completed with errors", "Cancelled"), "the batch's second end", timeout)
        wait(lambda d: all(
            row.get_attribute("data-status") in ("completed", "failed", "cancelled")
            for row in d.find_elements(By.CSS_SELECTOR, "#batch-jobs tbody tr")
        ), "every job final again", timeout)
        observed["second_end"] = {
            "status": batch_status(),
            "jobs": [
                {"line": row.get_attribute("data-line"), "status": row.get_attribute("data-status")}
                for row in driver.find_elements(By.CSS_SELECTOR, "#batch-jobs tbody tr")
            ],
        }
    observed["narrow_batch"] = narrow_check("bulk-batch-360.png")
    observed["after"] = storage()
    collect_console()
    driver.find_element(By.ID, "sign-out").click()
    visible("#signin")
    observed["after_sign_out"] = storage()
    collect_console()


def scenario_nano():
    observed["sign_in"] = sign_in(CONFIG["token"])
    collect_console()


def history_row(migration_id):
    return driver.find_element(By.CSS_SELECTOR, f"#history-table tbody tr[data-id='{migration_id}']")


def row_status(migration_id):
    return history_row(migration_id).find_element(By.CSS_SELECTOR, ".status").text


def scenario_history():
    observed["sign_in"] = sign_in(CONFIG["token"])
    migration = str(CONFIG["migration_id"])
    driver.find_element(By.ID, "tab-history").click()
    visible(f"#history-table tbody tr[data-id='{migration}']")
    observed["listed_as"] = row_status(migration)
    cancel = visible(f"button[aria-label='Cancel import #{migration}']")
    cancel.send_keys(Keys.ENTER)
    wait(lambda d: row_status(migration) == "Cancelled", "Cancelled in the history")
    observed["cancelled"] = {
        "status": row_status(migration),
        "error": history_row(migration).find_element(By.CSS_SELECTOR, "td[data-label=Error]").text,
        "buttons": [b.text for b in history_row(migration).find_elements(By.TAG_NAME, "button")],
    }
    # The filter: the cancelled import is listed under Cancelled and not under Completed.
    Select(driver.find_element(By.ID, "history-status")).select_by_visible_text("Completed")
    wait(lambda d: not d.find_elements(By.CSS_SELECTOR, f"#history-table tbody tr[data-id='{migration}']"), "the filter")
    observed["completed_filter"] = text_of("#history-list")
    Select(driver.find_element(By.ID, "history-status")).select_by_visible_text("Cancelled")
    visible(f"#history-table tbody tr[data-id='{migration}']")
    visible(f"button[aria-label='Retry import #{migration}']").click()
    # Retried, it leaves the Cancelled list.
    wait(
        lambda d: not d.find_elements(By.CSS_SELECTOR, f"#history-table tbody tr[data-id='{migration}']")
        or row_status(migration) != "Cancelled",
        "the retry",
    )
    Select(driver.find_element(By.ID, "history-status")).select_by_visible_text("All statuses")
    visible(f"#history-table tbody tr[data-id='{migration}']")
    observed["retried_as"] = row_status(migration)
    visible(f"button[aria-label='View import #{migration}']").click()
    visible("#progress")
    wait(
        lambda d: d.find_element(By.CSS_SELECTOR, "#progress-body .status").text in ("Completed", "Failed", "Cancelled"),
        "a final status",
        timeout=CONFIG.get("timeout", 240),
    )
    observed["final"] = {
        "status": text_of("#progress-body .status"),
        "actions": [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#progress-actions button")],
    }
    collect_console()


SCENARIOS = {"wizard": scenario_wizard, "bulk": scenario_bulk, "nano": scenario_nano, "history": scenario_history}

try:
    SCENARIOS[sys.argv[1]]()
except SystemExit:
    raise
except Exception as error:  # an unexpected page state: report it as a failure with the page
    fail(f"{type(error).__name__}: {error}")
driver.quit()
print(json.dumps(observed))
