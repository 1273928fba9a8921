"""The labeling page in a real headless browser (Debian's chromium, driven by selenium): it labels a batch with
keyboard shortcuts, survives a reload, undoes, retrains between rounds without leaving the page, and every label lands
in the folder's labels.jsonl; NER's words are tagged by clicks and keys. Skipped, saying why, where chromium, its
driver or selenium is missing."""

from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager

import pandas as pd
import pytest

from nlptransfer.active.loop import ActiveLoop
from nlptransfer.active.options import ActiveOptions, label_names
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
    with serving(loop) as url:
        yield url, folder


@contextmanager
def serving(loop: ActiveLoop):
    """The page's server over `loop` on a free port, in a thread; its URL."""
    server = bind(0)
    thread = threading.Thread(target=serve, args=(server, loop), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join(timeout=60)
        server.server_close()
        loop.folder.close()


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


def test_the_page_tags_a_sentence_by_clicks_and_keys(browser, tmp_path):
    """NER on the page: the words as chips with the suggested tags; a click and a shift-click select a span, a digit
    tags it with an entity type (B-, I-), 0 sets O, Enter sends the sentence's tags to labels.jsonl."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    options = ActiveOptions(task="token-classification", labels=["person", "loc"], label_with="serve", port=0)
    folder = ActiveFolder(tmp_path / "al").open()
    folder.write_batch({"round": 0, "items": [  # a batch waiting: the page serves it without a round
        {"text": "mary went to new york", "suggestion": ["B-person", "O", "O", "B-loc", "O"], "confidence": 0.4},
        {"text": "bob left", "suggestion": None, "confidence": None}]})
    with serving(ActiveLoop(folder, ["mary went to new york", "bob left"], label_names(options), options)) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 20, poll_frequency=0.1)
        chips = lambda: browser.find_elements(By.CSS_SELECTOR, "#text .chip")  # noqa: E731
        wait.until(lambda _: len(chips()) == 5)
        assert [chip.text.split("\n") for chip in chips()][0] == ["mary", "B-person"]
        body = browser.find_element(By.TAG_NAME, "body")
        chips()[3].click()
        ActionChains(browser).key_down(Keys.SHIFT).click(chips()[4]).key_up(Keys.SHIFT).perform()
        body.send_keys("2")  # loc over "new york"
        wait.until(lambda _: [chip.text.split("\n")[1] for chip in chips()][3:] == ["B-loc", "I-loc"])
        chips()[0].click()
        body.send_keys("0")  # mary: O after all
        wait.until(lambda _: chips()[0].text.endswith("\nO"))
        body.send_keys(Keys.ENTER)
        wait.until(lambda _: len(chips()) == 2 and "labeled 1 " in browser.find_element(By.ID, "progress").text)
        assert folder.labels() == {"mary went to new york": ["O", "O", "O", "B-loc", "I-loc"]}
        assert [chip.text for chip in chips()] == ["bob\nO", "left\nO"]  # no suggestion yet: every word O
