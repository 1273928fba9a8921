"""The labeling page in a real headless browser (Debian's chromium, driven by selenium): it labels a batch with
keyboard shortcuts, survives a reload, undoes, retrains between rounds without leaving the page, and every label lands
in the folder's labels.jsonl. Skipped, saying why, where chromium, its driver or selenium is missing."""

from __future__ import annotations

import shutil
import threading

import pandas as pd
import pytest

from nlptransfer.active.loop import ActiveLoop
from nlptransfer.active.options import ActiveOptions
from nlptransfer.active.server import bind, serve
from nlptransfer.active.state import ActiveFolder
from nlptransfer.config import RunConfig, apply_overrides

CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="chromium and chromedriver are not installed (apt-get install chromium "
                                       "chromium-driver)")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(tmp_path, reviews_csv, tiny_model_dir):
    """The page's server on a free port, in a thread, over a loop on the reviews with the tiny model."""
    pool = pd.read_csv(reviews_csv).text.tolist()
    options = ActiveOptions(model=tiny_model_dir, strategy="frozen", batch_size=5, label_with="serve", port=0)
    folder = ActiveFolder(tmp_path / "al").open()
    loop = ActiveLoop(folder, pool, ["neg", "neu", "pos"], options, apply_overrides(RunConfig(), ["train.epochs=1"]))
    server = bind(0)
    thread = threading.Thread(target=serve, args=(server, loop), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    thread.join(timeout=60)
    server.server_close()
    folder.close()


def test_the_page_labels_by_keyboard_survives_a_reload_and_retrains(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder = page
    browser.get(url)
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    progress = lambda: browser.find_element(By.ID, "progress").text  # noqa: E731
    text = lambda: browser.find_element(By.ID, "text").text  # noqa: E731
    wait.until(lambda _: "left in this round 5 of 5" in progress())  # the cold start's batch is there

    def press(key: str, labeled: int) -> None:
        before = text()
        browser.find_element(By.TAG_NAME, "body").send_keys(key)
        wait.until(lambda _: f"labeled {labeled} " in progress() and text() != before)

    first = text()
    press("1", 1)
    press("2", 2)
    browser.refresh()  # a reload keeps what was labeled and goes on with the next text
    wait.until(lambda _: "labeled 2 " in progress() and "left in this round 3 of 5" in progress())
    press("3", 3)
    browser.find_element(By.TAG_NAME, "body").send_keys("u")  # undo: the third text comes back
    wait.until(lambda _: "labeled 2 " in progress())
    press("3", 3)
    press("1", 4)
    assert browser.find_elements(By.CSS_SELECTOR, "#buttons button")[0].text == "1 neg"
    press("2", 5)  # the batch is labeled: the next round trains in the background
    wait.until(lambda _: "round 1" in progress() and "left in this round 5 of 5" in progress())
    assert browser.find_elements(By.CSS_SELECTOR, "#buttons button.suggested")  # a trained model suggests
    assert browser.find_elements(By.ID, "curve-line")  # the learning curve has its first point
    records = folder.records()
    assert [r["label"] for r in records] == ["neg", "neu", "pos", None, "pos", "neg", "neu"]
    assert records[0]["text"] == first and {r["by"] for r in records} == {"page"}
    assert len(folder.labels()) == 5
