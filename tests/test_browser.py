"""The report and the MLflow UI in a real browser (issue 17): headless
Chromium (Debian's ``chromium``) driven by Playwright, over the shared smoke
run's store. Screenshots go to ``test-output/`` (``RECONLAB_TEST_OUTPUT``).
Without Chromium the tests skip, saying how to install it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from reconlab import dashboards, tracking
from reconlab.cli import run_job

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("RECONLAB_TEST_OUTPUT", os.path.join(REPO, "test-output"))
ML = "?workflowType=machine_learning"  # the UI's "Model training" view (its default is GenAI)


@pytest.fixture(scope="module")
def browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no Chromium: install Debian's `apt-get install chromium` (.ci/run does where it can)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the [test] extra)")
    os.makedirs(OUT, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(smoke_store):
    """`make ui` on the smoke store: `mlflow server` on 127.0.0.1."""
    d, _ = smoke_store
    port = free_port()
    p = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host", "127.0.0.1",
                          "--port", str(port), "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
                          "--artifacts-destination", str(d / "artifacts")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(base + "/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or p.poll() is not None:
                p.kill()
                pytest.fail("mlflow server did not start")
            time.sleep(1)
    yield d, base
    os.killpg(p.pid, 15)
    p.wait(timeout=30)


def test_the_report_renders_every_section_and_image(browser, smoke_store, tmp_path):
    d, _ = smoke_store
    # the store named outright: an in-process MLflow client leaves MLFLOW_TRACKING_URI set behind it
    assert run_job(dashboards.main, ["--tracking-uri", f"sqlite:///{d}/mlflow.db", "--storage-path", str(d),
                                     "--out", str(tmp_path)]) == 0
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"file://{tmp_path}/index.html")
    titles = page.locator("section h2").all_inner_texts()
    assert titles == [f.title for f in dashboards.installed_sections().values()]
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert page.evaluate("document.images.length") >= 7 and broken == 0
    assert page.locator("#inversion table").count() >= 2 and page.locator("#xor .missing").count() == 1
    page.screenshot(path=os.path.join(OUT, "report.png"), full_page=True)
    page.close()


def test_the_mlflow_ui_shows_the_sweep_its_comparison_and_an_image_artifact(browser, ui):
    d, base = ui
    c = tracking.client(f"sqlite:///{d}/mlflow.db")
    exp = c.get_experiment_by_name("reconlab-inversion-smoke").experiment_id
    trials = c.search_runs([exp], f"tags.`{tracking.TAG_TRIAL}` != ''", max_results=2)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    # the experiment's runs, with the dataset each used
    page.goto(f"{base}/#/experiments/{exp}/runs{ML}")
    page.wait_for_selector("text=inversion-sweep", timeout=90_000)
    assert "digits (" in page.inner_text("body")
    page.screenshot(path=os.path.join(OUT, "mlflow_runs.png"))
    # two trial runs compared: their params and metric names
    ids = json.dumps([r.info.run_id for r in trials])
    page.goto(f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([exp])}")
    page.wait_for_selector("text=verifier_acc", timeout=90_000)
    body = page.inner_text("body")
    assert all(k in body for k in ("lr", "optimizer", "tv_weight", "verifier_acc", "verifier_conf"))
    page.screenshot(path=os.path.join(OUT, "mlflow_compare.png"), full_page=True)
    # a trial's image artifact, served by the server and drawn
    page.goto(f"{base}/#/experiments/{exp}/runs/{trials[0].info.run_id}/artifacts{ML}")
    page.click("text=inversion_task1.png", timeout=90_000)
    page.wait_for_function("Array.from(document.images).some(i => i.src.startsWith('blob:') && i.naturalWidth > 0)",
                           timeout=90_000)
    page.screenshot(path=os.path.join(OUT, "mlflow_artifact.png"))
    # the Models tab lists every model the job trained, registered (issue 30)
    names = sorted(m.name for m in c.search_registered_models())
    assert any(n.startswith("reconlab-classifier-") for n in names) and "reconlab-vae-reader_vae" in names, names
    page.goto(f"{base}/#/models")
    page.wait_for_selector(f"text={names[0]}", timeout=90_000)
    body = page.inner_text("body")
    assert all(n in body for n in names), (names, body[:2000])
    page.screenshot(path=os.path.join(OUT, "mlflow_models.png"))
    page.close()
