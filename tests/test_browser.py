"""A real browser against the example project: log in, read a conversation, run an action.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``; ``.ci/run``
installs them when missing) driven by Selenium. The example project runs as
``manage.py runserver`` on a fresh SQLite file, with the package's test server
as its upstream. Screenshots (the transcript, the overview's charts and its history of states, a
list of long ids at 1280 px, a 2,000-message transcript paged to its start) go to
``.ci/artifacts/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import IN_CI

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".ci" / "artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def require_browser() -> None:
    missing = [
        name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true, so a missing browser is a failure")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def example_site(tmp_path, motorhead_server) -> Iterator[str]:
    """The example project on a fresh database, with a conversation the server has not got yet."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | {
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MOTORHEAD_URL": motorhead_server.url,
    }
    env.pop("CELERY_BROKER_URL", None)

    def manage(*args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    manage("migrate", "--noinput")
    manage("example_demo_user")
    # Written while the upstream refuses every POST: the messages stay pending.
    motorhead_server.faults.fail_rate = 1.0
    motorhead_server.faults.fail_mode = "error"
    manage(
        "shell",
        "-c",
        (
            "from motorhead_django import memory\n"
            "s = memory.get_or_create_session('browser-demo')\n"
            "memory.append_messages(s, [('Human', 'Which planet is the largest?'),"
            " ('AI', 'Jupiter. ' + 'It is a gas giant. ' * 40),"
            " ('Human', 'And the smallest?'), ('AI', 'Mercury.')], context='Planets, by size.')\n"
        ),
    )
    motorhead_server.faults.clear()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "runserver did not start"
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


@pytest.fixture
def browser() -> Iterator:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_an_operator_reads_a_conversation_and_pushes_it(example_site, browser, motorhead_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(f"{example_site}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # Wait for the login to land (its cookie set) before navigating away from it.
    WebDriverWait(browser, 15).until(lambda driver: "/login/" not in driver.current_url)

    browser.get(f"{example_site}/admin/motorhead_django/chatsession/")
    row = browser.find_element(By.XPATH, "//tr[.//a[text()='browser-demo']]")
    assert "Retrying" in row.text or "Failed" in row.text  # the upstream refused it
    row.find_element(By.TAG_NAME, "a").click()

    messages = browser.find_elements(By.CSS_SELECTOR, ".mh-transcript .mh-message")
    assert [m.find_element(By.CLASS_NAME, "mh-role").text for m in messages] == [
        "Human",
        "AI",
        "Human",
        "AI",
    ]
    assert "Jupiter." in messages[1].text and "not pushed yet" in messages[1].text
    # Roles are told apart, and a long message wraps inside the page.
    assert messages[0].value_of_css_property("border-left-color") != (
        messages[1].value_of_css_property("border-left-color")
    )
    assert messages[1].size["width"] < 1280
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-transcript.png"))

    browser.get(f"{example_site}/admin/motorhead_django/chatsession/")
    browser.find_element(
        By.XPATH, "//tr[.//a[text()='browser-demo']]//input[@type='checkbox']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("push_now")
    browser.find_element(By.NAME, "index").click()
    notice = browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert "Pushed 4 message(s) of 1 session." in notice
    row = browser.find_element(By.XPATH, "//tr[.//a[text()='browser-demo']]")
    assert "Synced" in row.text
    assert [m["content"] for m in motorhead_server.stored_messages("browser-demo")][
        -1
    ] == "Mercury."
    assert motorhead_server.context("browser-demo") == "Planets, by size."


def _write_local(tmp_path, code: str) -> None:
    """Run ``code`` in the example project's shell on the browser test's database, local-only."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"} | {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MOTORHEAD_URL": "",
    }
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _log_in(browser, site: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda driver: "/login/" not in driver.current_url)


def test_overview_charts_a_long_transcript_and_long_ids_at_1280_px(example_site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    long_id = "support-ticket-" + "0123456789abcdef" * 8
    _write_local(
        tmp_path,
        "from motorhead_django import memory\n"
        "s = memory.get_or_create_session('two-thousand')\n"
        "for start in range(0, 2000, 100):\n"
        "    memory.append_messages(s, [('Human' if n % 2 == 0 else 'AI', f'line {n + 1}')"
        " for n in range(start, start + 100)])\n"
        f"memory.append_messages(memory.get_or_create_session({long_id!r}), [('Human', 'hi')])\n"
        # A day of samples of sessions by state, one every 5 minutes, with an outage of the
        # upstream in the afternoon and beat down for an hour (the history chart), then beat's own.
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from motorhead_django import history\n"
        "from motorhead_django.models import SyncStateSample\n"
        "now = timezone.now()\n"
        "SyncStateSample.objects.bulk_create(SyncStateSample(taken_at=now - timedelta(minutes=m),"
        " counts={'synced': 40 + (1440 - m) // 60, 'pending': 3 + m % 4,"
        " 'retrying': 12 if 300 < m < 420 else 0, 'failed': 2 if m < 300 else 0})"
        " for m in range(1440, 0, -5) if not 600 < m < 660)\n"
        "history.record_sample(now)\n",
    )
    _log_in(browser, example_site)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    browser.get(f"{example_site}/admin/motorhead_django/chatsession/sync-overview/")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.mh-chart")
    assert charts and charts[0].get_attribute("aria-label") == "Sessions by sync state"
    assert charts[0].size["width"] > 100 and charts[0].size["height"] > 50
    browser.save_screenshot(str(ARTIFACTS / "admin-overview-charts.png"))
    (over_time,) = browser.find_elements(By.CSS_SELECTOR, "svg.mh-chart-history")
    assert over_time.get_attribute("aria-label").startswith("Sessions by sync state over the last")
    assert over_time.size["width"] > 100 and over_time.size["height"] > 100
    browser.execute_script("arguments[0].scrollIntoView();", over_time)
    over_time.screenshot(str(ARTIFACTS / "admin-overview-history.png"))

    browser.get(f"{example_site}/admin/motorhead_django/chatsession/")
    cell = browser.find_element(By.CSS_SELECTOR, "span.mh-id")
    assert cell.get_attribute("title") == long_id
    overflow = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        " document.getElementById('result_list').getBoundingClientRect().right];"
    )
    assert overflow[0] <= overflow[1] and overflow[2] <= overflow[1], overflow
    browser.save_screenshot(str(ARTIFACTS / "admin-long-ids-1280.png"))

    browser.find_element(By.XPATH, "//a[text()='two-thousand']").click()
    shown = browser.find_elements(By.CSS_SELECTOR, ".mh-transcript .mh-message")
    assert len(shown) == 500 and "line 2000" in shown[-1].text
    pages = 1
    while browser.find_elements(By.CSS_SELECTOR, "a.mh-older"):
        browser.find_element(By.CSS_SELECTOR, "a.mh-older").click()
        pages += 1
        assert pages <= 5
    shown = browser.find_elements(By.CSS_SELECTOR, ".mh-transcript .mh-message")
    assert pages == 4 and len(shown) == 500
    assert shown[0].find_element(By.CLASS_NAME, "mh-seq").text == "#1"
    assert browser.find_elements(By.CSS_SELECTOR, "a.mh-newer")
    browser.save_screenshot(str(ARTIFACTS / "admin-transcript-start.png"))


def test_a_running_jobs_page_shows_its_progress_and_reloads_itself(example_site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    _write_local(
        tmp_path,
        "from datetime import timedelta\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.utils import timezone\n"
        "from motorhead_django.job_models import AdminJob\n"
        "AdminJob.objects.create(kind='push', description='Push now', state='running',"
        " user=get_user_model().objects.get(username='admin'), total=400, processed=120,"
        " failed=2, started_at=timezone.now() - timedelta(seconds=60),"
        " errors=[{'session_pk': 1, 'state': 'retrying', 'error': 'POST /sessions/x: 503'}])\n",
    )
    _log_in(browser, example_site)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{example_site}/admin/motorhead_django/adminjob/")
    browser.find_element(By.XPATH, "//a[starts-with(text(), 'Push now')]").click()
    bar = browser.find_element(By.CSS_SELECTOR, "progress.mh-progress")
    assert bar.get_attribute("value") == "120" and bar.get_attribute("max") == "400"
    assert bar.size["width"] > 200
    text = browser.find_element(By.ID, "mh-job").text
    assert "120 of 400 sessions (30%)" in text and "2 failed" in text and "503" in text
    assert "Please correct the error" not in browser.page_source  # a read-only page, no form errors
    refresh = browser.find_element(By.CSS_SELECTOR, "meta[http-equiv=refresh]")
    assert refresh.get_attribute("content") == "2"
    width = browser.execute_script("return [document.documentElement.scrollWidth, innerWidth];")
    assert width[0] <= width[1], width
    browser.save_screenshot(str(ARTIFACTS / "admin-job-progress.png"))
