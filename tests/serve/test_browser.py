"""The face page in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium).

Skipped, with the reason, when the browser or its driver is not installed: `.ci/browser-deps.sh`
installs them. Under CI=true a missing browser fails the run instead (see browser_gate.py).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.serve.browser_gate import missing_browser
from tests.serve.helpers import make_models, running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path("/tmp/facegan_serve.png")
WAIT_S = 30

_HAS_SELENIUM = importlib.util.find_spec("selenium") is not None
_missing = missing_browser(os.environ, CHROMIUM, CHROMEDRIVER, _HAS_SELENIUM)
if _missing is not None:
    if _missing[0] == "fail":
        pytest.fail(_missing[1], pytrace=False)
    pytest.skip(_missing[1], allow_module_level=True)
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Reads an <img>'s bytes by fetching its src (an http: or blob: URL) inside the page, as base64.
FETCH_IMAGE_JS = """
const [id, done] = arguments;
const img = document.getElementById(id);
img.decode()
  .then(() => fetch(img.src))
  .then((r) => r.blob())
  .then((blob) => {
    const reader = new FileReader();
    reader.onload = () => done(reader.result.split(",")[1]);
    reader.readAsDataURL(blob);
  })
  .catch((err) => done("ERROR " + err));
"""

IMAGE_READY_JS = """
const img = document.getElementById(arguments[0]);
return img !== null && !img.hidden && img.complete && img.naturalWidth > 0;
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("browser")
    with running_server(make_models(folder / "models"), folder / "server.log") as base:
        yield base


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # Offline machine: keep Chromium from phoning home, and give it a profile of its own.
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=900,1250",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    drv.set_script_timeout(WAIT_S)
    try:
        yield drv
    finally:
        drv.quit()


def wait_image(drv: WebDriver, element_id: str) -> None:
    WebDriverWait(drv, WAIT_S).until(
        lambda d: d.execute_script(IMAGE_READY_JS, element_id), f"#{element_id} never finished loading"
    )


def image_bytes(drv: WebDriver, element_id: str) -> bytes:
    encoded = drv.execute_async_script(FETCH_IMAGE_JS, element_id)
    assert not encoded.startswith("ERROR"), encoded
    return base64.b64decode(encoded)


def text(drv: WebDriver, element_id: str) -> str:
    return drv.find_element(By.ID, element_id).text


def severe_console_errors(drv: WebDriver) -> list[str]:
    """Console errors (CSP violations, failed loads, script errors) since the last call."""
    return [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def test_face_new_face_and_permalink(server: str, driver: WebDriver) -> None:
    driver.get(f"{server}/")
    wait_image(driver, "face")
    first_seed = text(driver, "seed")
    first = image_bytes(driver, "face")
    assert first.startswith(b"\x89PNG")
    assert driver.execute_script("return document.getElementById('face').naturalWidth") == 512

    # "New face" swaps in another face (no page load) and updates the seed and the permalink.
    driver.find_element(By.ID, "new-face").click()
    WebDriverWait(driver, WAIT_S).until(
        lambda d: text(d, "seed") != first_seed, "the seed never changed after 'New face'"
    )
    wait_image(driver, "face")
    new_seed = text(driver, "seed")
    second = image_bytes(driver, "face")
    assert second != first
    assert driver.current_url.endswith(f"/?seed={new_seed}&model=tiny32")

    # The permalink brings exactly that face back.
    permalink = driver.find_element(By.ID, "permalink").get_attribute("href")
    assert permalink == f"{server}/?seed={new_seed}&model=tiny32"
    driver.get(permalink)
    wait_image(driver, "face")
    assert text(driver, "seed") == new_seed
    assert image_bytes(driver, "face") == second

    # And the first face's permalink brings back the first face.
    driver.get(f"{server}/?seed={first_seed}")
    wait_image(driver, "face")
    assert image_bytes(driver, "face") == first
    assert severe_console_errors(driver) == []


def test_model_switcher(server: str, driver: WebDriver) -> None:
    driver.get(f"{server}/?seed=77")
    wait_image(driver, "face")
    tiny32 = image_bytes(driver, "face")
    Select(driver.find_element(By.ID, "model")).select_by_value("tiny64")
    WebDriverWait(driver, WAIT_S).until(lambda d: "model=tiny64" in d.current_url)
    wait_image(driver, "face")
    assert "model=tiny64" in driver.find_element(By.ID, "face").get_attribute("src")
    assert image_bytes(driver, "face") != tiny32
    assert severe_console_errors(driver) == []


def test_latent_walk_and_screenshot(server: str, driver: WebDriver) -> None:
    driver.get(f"{server}/?seed=5&model=tiny64")
    wait_image(driver, "face")
    to = driver.find_element(By.ID, "walk-to")
    to.clear()
    to.send_keys("11")
    frames = driver.find_element(By.ID, "walk-frames")
    frames.clear()
    frames.send_keys("12")
    driver.find_element(By.ID, "walk-go").click()
    wait_image(driver, "walk")
    gif = image_bytes(driver, "walk")
    assert gif.startswith(b"GIF8")

    walk = Image.open(io.BytesIO(gif))
    assert (walk.n_frames, walk.size) == (12, (256, 256))
    assert severe_console_errors(driver) == []

    # A bad walk is reported on the page, not silently dropped.
    to.clear()
    to.send_keys("9999999999999999999")  # > 2^63 - 1
    driver.find_element(By.ID, "walk-go").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "to must be" in text(d, "status"))

    driver.find_element(By.ID, "walk-to").clear()
    driver.find_element(By.ID, "walk-to").send_keys("11")
    driver.find_element(By.ID, "walk-go").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: text(d, "status") == "")
    driver.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 0


def test_variety_and_upscaling_controls(server: str, driver: WebDriver) -> None:
    severe_console_errors(driver)  # drain what earlier tests left (their deliberate bad requests)
    driver.get(f"{server}/?seed=21&model=tiny64")
    wait_image(driver, "face")
    # the walk area shows nothing (no broken-image frame) before the first walk
    assert not driver.find_element(By.ID, "walk").is_displayed()
    # default: smooth upscaling, said on the page, and not pixelated by CSS
    assert "smooth Lanczos upscaling" in text(driver, "upscale-note")
    assert (
        driver.execute_script("return getComputedStyle(document.getElementById('face')).imageRendering")
        != "pixelated"
    )
    smooth = image_bytes(driver, "face")

    Select(driver.find_element(By.ID, "upscale")).select_by_value("nearest")
    WebDriverWait(driver, WAIT_S).until(lambda d: "resample=nearest" in d.current_url)
    wait_image(driver, "face")
    crisp = image_bytes(driver, "face")
    assert crisp != smooth and "crisp pixels" in text(driver, "upscale-note")
    assert (
        driver.execute_script("return getComputedStyle(document.getElementById('face')).imageRendering")
        == "pixelated"
    )

    # a 64 px face at 512 px with nearest is 8×8 blocks of one colour; Lanczos is not
    def blocky(png: bytes) -> bool:
        arr = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        return np.array_equal(arr, arr[::8, ::8].repeat(8, axis=0).repeat(8, axis=1))

    assert blocky(crisp) and not blocky(smooth)

    Select(driver.find_element(By.ID, "variety")).select_by_value("1")  # "low": t = 1.0
    WebDriverWait(driver, WAIT_S).until(lambda d: "truncation=1" in d.current_url)
    wait_image(driver, "face")
    low = image_bytes(driver, "face")
    assert low != crisp and text(driver, "seed") == "21"  # same seed, less variety
    permalink = driver.find_element(By.ID, "permalink").get_attribute("href")
    assert "truncation=1" in permalink and "resample=nearest" in permalink
    driver.get(permalink)  # the permalink shows exactly this face, with these settings
    wait_image(driver, "face")
    assert image_bytes(driver, "face") == low
    assert severe_console_errors(driver) == []


def set_slider(drv: WebDriver, element_id: str, value: str) -> None:
    """Move a range input as a user's drag ends: set its value, then fire input and change."""
    drv.execute_script(
        "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('input', {bubbles: true}));"
        "s.dispatchEvent(new Event('change', {bubbles: true}));",
        element_id,
        value,
    )


def test_edit_sliders_permalink_and_reset(server: str, driver: WebDriver) -> None:
    severe_console_errors(driver)  # drain what earlier tests left
    driver.get(f"{server}/?seed=33&model=tiny64")
    wait_image(driver, "face")
    plain = image_bytes(driver, "face")
    sliders = driver.find_elements(By.CSS_SELECTOR, ".edit-slider")
    assert [s.get_attribute("data-edit") for s in sliders] == ["Smiling", "Blond_Hair"]
    assert all(s.get_attribute("value") == "0" for s in sliders)

    # Moving a slider redraws the same seed edited, and the URL becomes a permalink of seed + edits.
    set_slider(driver, "edit-Smiling", "0.75")
    WebDriverWait(driver, WAIT_S).until(lambda d: "edit=Smiling%3A0.75" in d.current_url)
    wait_image(driver, "face")
    smiling = image_bytes(driver, "face")
    assert smiling != plain and text(driver, "seed") == "33"
    assert text(driver, "edit-Smiling-value") == "0.75"
    set_slider(driver, "edit-Blond_Hair", "-1")
    WebDriverWait(driver, WAIT_S).until(lambda d: "Blond_Hair%3A-1" in d.current_url)
    wait_image(driver, "face")
    both = image_bytes(driver, "face")
    assert both not in (plain, smiling)
    permalink = driver.find_element(By.ID, "permalink").get_attribute("href")
    assert permalink == driver.current_url
    assert "edit=Smiling%3A0.75%2CBlond_Hair%3A-1" in driver.find_element(By.ID, "download").get_attribute(
        "href"
    )

    # The permalink brings back exactly this edited face, sliders where they were.
    driver.get(permalink)
    wait_image(driver, "face")
    assert image_bytes(driver, "face") == both
    assert driver.find_element(By.ID, "edit-Blond_Hair").get_attribute("value") == "-1"

    # Back to 0 is the unedited face, bit for bit.
    driver.find_element(By.ID, "edit-reset").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "edit=" not in d.current_url)
    wait_image(driver, "face")
    assert image_bytes(driver, "face") == plain

    # A new face starts with every slider at 0.
    set_slider(driver, "edit-Smiling", "1")
    WebDriverWait(driver, WAIT_S).until(lambda d: "edit=Smiling%3A1" in d.current_url)
    driver.find_element(By.ID, "new-face").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: text(d, "seed") != "33")
    wait_image(driver, "face")
    assert all(s.get_attribute("value") == "0" for s in driver.find_elements(By.CSS_SELECTOR, ".edit-slider"))
    assert "edit=" not in driver.current_url and text(driver, "edit-Smiling-value") == "0"
    assert severe_console_errors(driver) == []
