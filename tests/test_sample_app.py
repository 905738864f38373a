"""The unlock-screen prototype used as a person would: a real Chromium whose camera plays real LFW
faces (a Y4M fake-camera file), the real `hyperverify app` server, clicks on the page.

Scripted session: A enrolls from three photos (uploaded through the page's file input) and chooses
a PIN; A unlocks; B stays locked; five failures in a row lock out and the countdown shows; A is
locked out too; A unlocks once the countdown ends. Every decision is checked on the server's answer
(reason, score against the threshold in --debug mode, lock state) and on the page (what a person
reads). A second app shows recovery: a tampered enrollment is "Locked: recovery needed (PIN)", the
PIN unlocks, the page locks again by itself. The attacks over plain HTTP are in test_app_attacks.py.

Screenshots of each state go to $HYPERVERIFY_SCREENSHOTS (set it to sample_app/screenshots to refresh
the README's pictures), otherwise to a temporary folder. Needs Debian's chromium (/usr/bin/chromium)
and the `playwright` Python package; nothing is installed at test time: without them the browser
tests skip, naming the install line (under CI=true they fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from app_harness import PIN, App, running
from conftest import lfw_image, require_system
from hyperverify.runtime.image_io import decode_image, read_image
from hyperverify.sample_app.frames import FrameSource, letterbox, write_y4m

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream"]
LOCKOUT_SECONDS = 5.0
OWNER, IMPOSTOR = "George_W_Bush", "Tony_Blair"
ENROLL_PHOTOS = (1, 2, 3)         # A's photos uploaded for enrollment
OWNER_CAMERA = (29, 30, 46)   # A's camera (never enrolled), each photo shown for 10 frames; the
                              # default model accepts each as a 320x240 camera frame by >= 1 logit
IMPOSTOR_CAMERA = (2, 3, 4)       # B's camera
VIEWPORT = {"width": 1030, "height": 560}

@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("HYPERVERIFY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _env(tmp: Path) -> dict:
    return dict(os.environ, HYPERVERIFY_CACHE=str(tmp / "cache"))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, lfw: Path):
    """The app as a user starts it, with no --bundle: it builds one from the default model (or finds
    it up to date, when test_app_attacks built it first). --debug: the session checks scores."""
    state = tmp_path_factory.getbasetemp() / "app-state"
    with running("--state-dir", str(state), "--lockout-seconds", str(LOCKOUT_SECONDS), "--debug",
                 env=_env(state)) as server:
        yield server


@pytest.fixture(scope="module")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_system(False, "the playwright package (pip install -e '.[test]')")
    require_system(CHROMIUM.exists(), f"Chromium ({CHROMIUM})")
    with sync_playwright() as pw:
        yield pw


@contextlib.contextmanager
def opened_page(playwright, url: str, camera: Path | None = None) -> Iterator:
    """A Chromium page on ``url`` (its camera playing ``camera``), closed with its browser on the way out."""
    args = CHROMIUM_ARGS + ([f"--use-file-for-fake-video-capture={camera}"] if camera else [])
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
    try:
        page = browser.new_page(viewport=VIEWPORT, bypass_csp=True)  # the app's CSP forbids eval, Playwright waits use it
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(url)
        page.wait_for_function("document.getElementById('lock-screen').dataset.state !== 'loading'")
        if camera:
            page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=30_000)
        page.errors = errors
        yield page
    finally:
        browser.close()


def press(page, selector: str, endpoint: str) -> dict:
    """Click, wait for the server's answer and for the page to have drawn it; the answer's JSON."""
    with page.expect_response(lambda r: r.url.endswith(endpoint), timeout=120_000) as info:
        page.click(selector)
    reply = info.value.json()
    state = reply.get("state")
    if state:
        page.wait_for_function(f"document.getElementById('lock-screen').dataset.state === '{state}'")
    if "decision" in reply:
        page.wait_for_function(
            f"document.getElementById('decision').dataset.reason === '{reply['decision']['reason']}'")
    return reply


def shot(page, folder: Path, name: str) -> None:
    """A screenshot, reduced to 128 colours so that the committed PNGs stay small."""
    from PIL import Image

    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def assert_decision(reply: dict, reason: str, state: str, debug: bool = True) -> dict:
    """The server's answer: reason, state, and in --debug mode the score against the threshold
    (without --debug neither may be in the answer)."""
    decision = reply["decision"]
    assert decision["reason"] == reason, decision
    assert reply["state"] == state, reply
    assert decision["accepted"] is (reason == "accepted")
    if not debug:
        assert "score" not in decision and "threshold" not in decision and "threshold" not in reply, reply
    elif reason in ("accepted", "rejected"):
        assert (decision["score"] >= decision["threshold"]) is (reason == "accepted"), decision
    if reason in ("accepted", "rejected"):
        assert decision["decision_ms"] > 0
    return decision


def refresh(page) -> None:
    """What the page draws from a fresh /api/status (a person looking at it again)."""
    page.evaluate("async () => render(await api('/api/status'))")


def camera_file(folder: Path, lfw: Path, name: str, numbers: tuple[int, ...]) -> Path:
    return write_y4m(folder / f"{name}.y4m", [lfw_image(lfw, name, n) for n in numbers], repeat=10, fps=10)


@pytest.mark.data
@pytest.mark.slow
def test_unlock_session(playwright, app: App, lfw: Path, tmp_path: Path, shots: Path) -> None:
    owner_camera = camera_file(tmp_path, lfw, OWNER, OWNER_CAMERA)
    impostor_camera = camera_file(tmp_path, lfw, IMPOSTOR, IMPOSTOR_CAMERA)
    with opened_page(playwright, app.url, owner_camera) as a, opened_page(playwright, app.url, impostor_camera) as b:
        assert a.locator("#lock-screen").get_attribute("data-state") == "not_enrolled"
        assert a.locator("#unlock").is_disabled()

        # A enrolls from three photos, uploaded through the page; the first enrollment sets a PIN.
        a.set_input_files("#enroll-files", [str(lfw_image(lfw, OWNER, n)) for n in ENROLL_PHOTOS])
        reply = press(a, "#enroll-upload", "/api/enroll")
        assert "Choose a PIN" in reply["error"] and "Choose a PIN" in text(a, "#enroll-message")
        assert text(a, "#enroll-pin-label").startswith("Choose a PIN")
        a.fill("#enroll-pin", PIN)
        reply = press(a, "#enroll-upload", "/api/enroll")
        assert "error" not in reply and reply["pin_set"], reply
        assert reply["state"] == "locked" and reply["enrolled"]
        assert "Enrolled from 3 images" in text(a, "#enroll-message")
        assert text(a, "#lock-title") == "Locked"
        shot(a, shots, "enrolled")

        # A unlocks.
        decision = assert_decision(press(a, "#unlock", "/api/verify"), "accepted", "unlocked")
        assert text(a, "#lock-title") == "Unlocked" and "unlocked" in text(a, "#message")
        assert f"{decision['score']:.2f} ≥ threshold" in text(a, "#d-score")
        assert re.fullmatch(r"Locks again in \d+ s", text(a, "#relock")) and text(a, "#d-failures") == "–"
        shot(a, shots, "unlocked")

        # B stays locked; the fifth failure in a row locks out, with a countdown.
        b.reload()
        b.wait_for_function("document.getElementById('lock-screen').dataset.state === 'locked'")
        b.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=30_000)
        for attempt in range(1, 6):
            if attempt == 2:
                # A's screen, still unlocked, shows no failure count (B's 1 of 5 is not A's), then A locks.
                refresh(a)
                assert text(a, "#lock-title") == "Unlocked" and text(a, "#d-failures") == "–"
                assert press(a, "#lock-again", "/api/lock")["state"] == "locked"
            b.wait_for_timeout(700)  # a person's pace: the camera moves on to B's next photo
            reply = press(b, "#unlock", "/api/verify")
            if attempt < 5:
                assert_decision(reply, "rejected", "locked")
                assert reply["failures"] == attempt and reply["locked_for"] == 0
                assert text(b, "#lock-title") == "Locked" and "not recognised" in text(b, "#message")
                assert text(b, "#d-failures") == f"{attempt} of 5"
                if attempt == 1:
                    shot(b, shots, "locked-B")
            else:
                decision = assert_decision(reply, "rejected", "locked_out")
                assert 0 < decision["locked_for"] <= LOCKOUT_SECONDS
        assert text(b, "#lock-title") == "Locked out" and text(b, "#d-failures") == "locked out after 5 in a row"
        assert re.fullmatch(r"Too many failed attempts\. Try again in [1-5] s", text(b, "#countdown"))
        assert b.locator("#unlock").is_disabled()
        shot(b, shots, "lockout-countdown")

        # The device is locked, not the person: A is refused too while the countdown runs.
        reply = press(a, "#unlock", "/api/verify")
        assert_decision(reply, "locked_out", "locked_out")
        assert reply["decision"]["score"] is None and reply["locked_for"] > 0
        assert a.locator("#countdown").is_visible()

        # When the countdown ends the page says so by itself; A unlocks.
        a.wait_for_function("document.getElementById('lock-screen').dataset.state === 'locked'",
                            timeout=(LOCKOUT_SECONDS + 10) * 1000)
        assert not a.locator("#countdown").is_visible()
        reply = press(a, "#unlock", "/api/verify")
        assert_decision(reply, "accepted", "unlocked")
        assert reply["failures"] == 0
        shot(a, shots, "unlocked-after-lockout")

        # Frame arrival to decision, median over this session's decided frames (7: 2 A, 5 B).
        assert reply["frames_timed"] == 7 and reply["median_decision_ms"] > 0
        (shots / "session.json").write_text(json.dumps({
            "median_decision_ms": reply["median_decision_ms"], "frames_timed": reply["frames_timed"],
            "history": reply["history"]}, indent=2) + "\n")
        assert a.errors == [] and b.errors == []


@pytest.mark.data
@pytest.mark.slow
def test_bad_input_and_source_mode(playwright, app: App, lfw: Path, tmp_path: Path, shots: Path) -> None:
    """Non-images, empty files, a photo without a face, empty and corrupt frames: a message, no crash.
    Also --source (frames played by the server) and enrollment from camera frames."""
    bundle = Path(re.search(r"bundle: (\S+)", "".join(app.output)).group(1))
    frames = tmp_path / "frames"
    frames.mkdir()
    gradient = np.linspace(40, 220, 320 * 240 * 3).reshape(240, 320, 3).astype(np.uint8)
    cv2.imwrite(str(frames / "0-no-face.png"), gradient)
    for i, n in enumerate(ENROLL_PHOTOS[:2]):
        shutil.copyfile(lfw_image(lfw, OWNER, n), frames / f"{i + 1}-{OWNER}.jpg")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "empty.jpg").write_bytes(b"")
    state = tmp_path / "state"
    with running("--bundle", str(bundle), "--state-dir", str(state), "--source", str(frames),
                 env=_env(tmp_path)) as server, opened_page(playwright, server.url) as page:
        page.wait_for_function("document.getElementById('source-frame').naturalWidth > 0")
        page.click("#source-play")  # pause, then step to frame 1 as a person would
        for _ in range(3):
            if text(page, "#camera-note").endswith("frame 1 of 3."):
                break
            page.click("#source-next")
        assert text(page, "#camera-note").endswith("frame 1 of 3.")

        page.fill("#enroll-pin", PIN)
        for upload, words in (("notes.txt", "not a readable image"), ("empty.jpg", "empty file")):
            page.set_input_files("#enroll-files", str(tmp_path / upload))
            reply = press(page, "#enroll-upload", "/api/enroll")
            assert words in reply["error"] and words in text(page, "#enroll-message"), reply
            assert upload in text(page, "#enroll-message")
            if upload == "notes.txt":
                shot(page, shots, "bad-upload")
        page.set_input_files("#enroll-files", str(frames / "0-no-face.png"))
        reply = press(page, "#enroll-upload", "/api/enroll")
        assert "no face found" in reply["error"] and "0-no-face.png" in text(page, "#enroll-message")
        assert reply["state"] == "not_enrolled"

        # Enroll from two camera frames (frames 2 and 3 of the source: A).
        page.click("#source-next")
        page.fill("#enroll-count", "2")
        reply = press(page, "#enroll-camera", "/api/enroll")
        assert reply["state"] == "locked" and "Enrolled from 2 images" in text(page, "#enroll-message")
        tab = server.tab()  # another tab, never unlocked, may not delete the face
        status, reply = tab.forget()
        assert status == 403 and "Only the owner" in reply["error"] and reply["enrolled"]

        # No face in view: a message, and it is no attempt.
        page.click("#source-next")  # wraps to frame 1
        page.wait_for_function("document.getElementById('camera-note').textContent.endsWith('frame 1 of 3.')")
        page.wait_for_function("document.getElementById('source-frame').complete")
        reply = press(page, "#unlock", "/api/verify")
        assert_decision(reply, "no_face", "locked", debug=False)
        assert reply["failures"] == 0 and "No face found" in text(page, "#message")
        shot(page, shots, "no-face")
        page.click("#source-next")
        page.wait_for_function("document.getElementById('camera-note').textContent.endsWith('frame 2 of 3.')")
        page.wait_for_function("document.getElementById('source-frame').complete")
        assert_decision(press(page, "#unlock", "/api/verify"), "accepted", "unlocked", debug=False)
        assert page.locator("#d-score-row").is_hidden()

        # Straight to the server: empty and corrupt frames, a form that is no form, unknown paths.
        # (The page's unlock is the page's alone: the other tab stays locked.)
        status, reply = tab.verify(b"")
        assert status == 400 and "empty" in reply["error"] and reply["state"] == "locked"
        jpeg = (frames / f"1-{OWNER}.jpg").read_bytes()
        for body in (b"\x00" * 100, jpeg[: len(jpeg) // 2]):
            status, reply = tab.verify(body)
            assert status == 400 and ("not a readable image" in reply["error"] or "truncated" in reply["error"])
            assert reply["failures"] == 0  # an unreadable frame is no attempt
        status, reply = tab.call("/api/enroll", b"hello", "text/plain")
        assert status == 400 and "multipart/form-data" in reply["error"]
        assert tab.call("/api/nothing")[0] == 404
        with urllib.request.urlopen(server.url + "api/source/4.jpg", timeout=60) as response:  # 4 % 3: frame 2
            assert response.headers["Content-Type"] == "image/jpeg"
            assert decode_image(response.read()).shape == read_image(frames / f"1-{OWNER}.jpg").shape
        refresh(page)
        assert text(page, "#lock-title") == "Unlocked" and tab.status()["state"] == "locked"
        assert page.errors == []


@pytest.mark.data
@pytest.mark.slow
def test_recovery_pin_and_relock_in_the_page(playwright, app: App, lfw: Path, tmp_path: Path, shots: Path) -> None:
    """A flipped bit in the saved enrollment, then a restart: the page says "Locked: recovery needed
    (PIN)", refuses a new face without the PIN, unlocks with the PIN, takes the new enrollment, and
    an unlocked page locks again by itself."""
    bundle = Path(re.search(r"bundle: (\S+)", "".join(app.output)).group(1))
    run = ("--bundle", str(bundle), "--state-dir", str(tmp_path / "state"), "--relock-seconds", "6")
    with running(*run, env=_env(tmp_path)) as first:
        status, reply = first.tab().enroll([lfw_image(lfw, OWNER, n) for n in ENROLL_PHOTOS], pin=PIN)
        assert status == 200 and reply["state"] == "locked", reply
    user_file = tmp_path / "state" / "users" / "owner.hvu"
    data = bytearray(user_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    user_file.write_bytes(bytes(data))
    with running(*run, env=_env(tmp_path)) as server, opened_page(playwright, server.url) as page:
        assert text(page, "#lock-title") == "Locked: recovery needed (PIN)"
        assert "recovery needed (PIN)" in text(page, "#notice") and page.locator("#unlock").is_disabled()
        page.set_input_files("#enroll-files", [str(lfw_image(lfw, IMPOSTOR, n)) for n in IMPOSTOR_CAMERA])
        reply = press(page, "#enroll-upload", "/api/enroll")
        assert "Only the owner" in reply["error"] and "Only the owner" in text(page, "#enroll-message")
        assert reply["state"] == "recovery_needed"
        shot(page, shots, "recovery")

        page.fill("#pin", "0000")
        press(page, "#pin-unlock", "/api/pin")
        assert text(page, "#message") == "Wrong PIN." and text(page, "#lock-title").startswith("Locked: recovery")
        page.fill("#pin", PIN)
        reply = press(page, "#pin-unlock", "/api/pin")
        assert reply["state"] == "unlocked" and text(page, "#message") == "Unlocked with the PIN."
        page.set_input_files("#enroll-files", [str(lfw_image(lfw, OWNER, n)) for n in ENROLL_PHOTOS])
        reply = press(page, "#enroll-upload", "/api/enroll")
        assert "error" not in reply and reply["state"] == "locked" and not reply["notice"], reply
        assert page.locator("#notice").is_hidden() and text(page, "#lock-title") == "Locked"

        page.fill("#pin", PIN)
        press(page, "#pin-unlock", "/api/pin")
        assert re.fullmatch(r"Locks again in [1-6] s", text(page, "#relock"))
        shot(page, shots, "pin-unlocked")
        page.wait_for_function("document.getElementById('lock-screen').dataset.state === 'locked'", timeout=15_000)
        assert "Locked again" in text(page, "#message") and page.locator("#relock").is_hidden()
        assert page.errors == []


@pytest.mark.data
def test_fake_camera_file_round_trip(lfw: Path, tmp_path: Path) -> None:
    photos = [lfw_image(lfw, OWNER, n) for n in (1, 2, 3)]
    source = FrameSource(write_y4m(tmp_path / "a.y4m", photos, repeat=3))
    assert len(source) == 9
    for index, photo in ((0, photos[0]), (5, photos[1]), (8, photos[2])):
        expected = letterbox(read_image(photo), 320, 240).astype(int)
        assert np.abs(source.rgb(index).astype(int) - expected).mean() < 2.0  # 4:2:0 chroma rounding
    (tmp_path / "cut.y4m").write_bytes((tmp_path / "a.y4m").read_bytes()[:-100])
    assert len(FrameSource(tmp_path / "cut.y4m")) == 8  # the truncated last frame is left out


def test_app_help_and_bad_source(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "hyperverify.sdk.cli", "app"]
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--source" in helped.stdout and "127.0.0.1" in helped.stdout
    (tmp_path / "bad.y4m").write_bytes(b"not a video")
    for source, words in ((tmp_path / "none", "no such file"), (tmp_path / "bad.y4m", "not a YUV4MPEG2")):
        result = subprocess.run([*run, "--source", str(source), "--bundle", str(tmp_path), "--port", "0"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
