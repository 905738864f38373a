"""The unlock-screen prototype: a local web page in front of the on-device runtime.

    hyperverify app                      # builds a bundle from the default model, serves on 127.0.0.1:8765
    hyperverify app --source photos/     # no camera: play a folder of images (or a .y4m video) instead

The page is the phone: it shows the camera, sends frames (JPEG) to this server and draws the lock
screen from the answers. The server plays two parts and keeps them apart:

- the device: ``hyperverify.runtime.load`` and ``Verifier.verify_encoded`` only (what an app ships),
  with the runtime's persisted lockout (``runtime.lockout``: 5 rejects lock 30 s, escalating, a PIN
  after 20; checked before a frame is decoded);
- the backend: enrollment through ``hyperverify.sdk.export_user.export_user`` (what a phone would ask
  a server to do), which writes the user's ``.hvu`` file that the device then loads.

The app is the owner's alone (DESIGN 8, issue 11):

- each browser tab is a session; "unlocked" belongs to that session and ends by itself after
  ``relock_seconds`` (default 60);
- the first enrollment sets a PIN; afterwards enrolling again, or deleting the face, needs the
  session unlocked less than ``MANAGE_SECONDS`` ago, or the PIN;
- a saved enrollment that fails to load is "locked: recovery needed (PIN)", never "not enrolled":
  only the PIN (then a new enrollment) or ``--reset`` on the command line gets past it;
- scores, thresholds and whether the backbone judged (the cascade's escalation: it says the face came
  close) are in answers only with ``debug=True`` (``--debug``).

HTTP, sessions and the request checks (CSRF token, Origin, Host, sizes, timeouts) are in ``web.py``.
Every device operation runs on one worker thread there (the runtime is not thread-safe).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Callable

from hyperverify.runtime import TrustPolicy, load
from hyperverify.runtime.errors import FaceNotFoundError, HyperverifyError, ImageError
from hyperverify.runtime.faces import FaceDetector
from hyperverify.runtime.image_io import decode_image
from hyperverify.runtime.lockout import FIRST_LOCK_SECONDS, Lockout, LockoutRules
from hyperverify.runtime.manifest import sha256_bytes
from hyperverify.runtime.trust import open_manifest
from hyperverify.sample_app.frames import FrameSource
from hyperverify.sample_app.pin import PinError, PinStore, check_new_pin

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
RELOCK_SECONDS = 60.0
MANAGE_SECONDS = 30.0
"""How long after an unlock the session may enroll again or delete the face without the PIN."""
MAX_ENROLL_IMAGES = 10
TIMINGS_KEPT = 1000

MESSAGES = {
    "accepted": "Face recognised: unlocked.",
    "rejected": "Face not recognised. The screen stays locked.",
    "no_face": "No face found. Look straight at the camera.",
    "several_faces": "More than one face in view. Only the phone's owner should be in the picture.",
    "face_too_small": "The face is too far away. Move closer to the camera.",
    "low_quality": "The picture is too blurry or unclear. Hold still, in good light.",
    "locked_out": "Too many failed attempts. Wait until the countdown ends, or use the PIN.",
    "pin_required": "Too many failed attempts: only the PIN unlocks now.",
    "not_enrolled": "Nobody is enrolled yet. Enroll a face first (Enroll panel).",
    "recovery_needed": "Locked: recovery needed (PIN). The saved enrollment cannot be used.",
}
"""Each decision reason (``Result.reason`` and the app's own) in plain words, as the page shows it."""


class AppError(HyperverifyError):
    """A request the app refuses, with the message the page shows; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    """One browser tab: its CSRF token and whether (and since when) it is unlocked."""

    token: str
    unlocked_at: float = -math.inf
    unlocked_until: float = -math.inf
    epoch: int = 0  # the enrollment it was unlocked for; a new enrollment or a deletion locks every session


# -- the bundle -------------------------------------------------------------------------------------

def app_trust(signing_key: Path | None = None) -> TrustPolicy:
    """The prototype's trust anchor: the public half of the key it signs with (default
    ``signing.default_key_path()``), taken from that key in this process, never from the bundle or
    the state folder. A phone app compiles the backend's public key into its code instead."""
    from hyperverify.sdk.signing import default_key_path, load_private_key, public_raw

    path = Path(signing_key) if signing_key else default_key_path()
    if not path.exists():
        raise HyperverifyError(f"{path}: no signing key; run `hyperverify app` without --bundle once to make one, "
                               "or pass the --signing-key the bundle was built with")
    return TrustPolicy.signed(public_raw(load_private_key(path)))


def ensure_bundle(target: Path, model: Path | None = None, signing_key: Path | None = None) -> tuple[Path, bool]:
    """A bundle in ``target`` built from ``model`` (default: the committed model) and signed with
    ``signing_key`` (default ``signing.default_key_path()``, made when absent), rebuilt when the
    model's bytes differ from the bundle's enrollment model or its manifest is not signed by that
    key. Returns (bundle, built now). The prototype enrolls through the backend (``export_user``); its
    bundle carries the enrollment program all the same, as the backbone the cascade escalates to
    (``runtime/cascade.py``)."""
    from hyperverify.sdk.enroll import DEFAULT_MODEL
    from hyperverify.sdk.export_user import ENROLLMENT_MODEL, build_signed_bundle

    model_path = Path(model or DEFAULT_MODEL)
    try:
        manifest = open_manifest(target, app_trust(signing_key))
        if model_path.is_file() and manifest.files.get(ENROLLMENT_MODEL) == sha256_bytes(model_path.read_bytes()):
            return target, False
    except HyperverifyError:
        pass  # no key or bundle yet, a broken bundle or one signed by another key: build it
    build_signed_bundle(target, model_path, signing_key, coreml=False, detector=False)
    return target, True


# -- the app: device + backend, no HTTP -------------------------------------------------------------

class UnlockApp:
    """The lock screen's state and its actions: verify (one attempt), PIN, enroll, forget, lock.

    Public methods take the caller's ``Session`` and return the JSON-able ``status(session)`` dict
    (plus ``decision`` for ``verify``) or raise ``AppError`` with a message for the page. Call them
    from one thread (``web.py`` does).
    """

    def __init__(self, bundle: Path, state_dir: Path, *, lockout_seconds: float = FIRST_LOCK_SECONDS,
                 relock_seconds: float = RELOCK_SECONDS, debug: bool = False, user_id: str = "owner",
                 signing_key: Path | None = None, source: FrameSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if relock_seconds <= 0:
            raise HyperverifyError("relock_seconds must be positive")
        self.bundle, self.state_dir = Path(bundle), Path(state_dir)
        self.user_id, self.signing_key, self.source = user_id, signing_key, source
        self.trust = app_trust(signing_key)
        self.relock_seconds, self.debug, self.clock = relock_seconds, debug, clock
        self.lockout = Lockout.in_folder(self.state_dir, user_id, rules=LockoutRules(first_lock_seconds=lockout_seconds))
        self.pin = PinStore(self.users / f"{user_id}.pin.json", self.state_dir / "lockout" / f"{user_id}.pin.json")
        self.detector = FaceDetector()
        self.verifier = None
        self.enrollment_error = ""
        self.epoch = 0
        self.timings_ms: list[float] = []
        self.history: list[dict] = []
        self._open_enrollment()

    @property
    def users(self) -> Path:
        return self.state_dir / "users"

    @property
    def user_file(self) -> Path:
        return self.users / f"{self.user_id}.hvu"

    def _open_enrollment(self) -> None:
        """Load the saved enrollment. This is the app's single call into the runtime's trust checks
        (``hyperverify.runtime.load``): whatever they refuse (a flipped bit, a forged threshold, a
        missing signature) leaves the app in "recovery needed", never in "not enrolled"."""
        self.verifier, self.enrollment_error = None, ""
        if not self.user_file.exists():
            if self.pin.is_set():
                self.enrollment_error = "the enrolled face is missing"
            return
        try:
            self.verifier = load(self.bundle, self.user_file, self.trust, lockout=self.lockout, detector=self.detector)
        except HyperverifyError as err:
            self.enrollment_error = str(err)

    # -- state ------------------------------------------------------------------------------------

    def is_unlocked(self, session: Session) -> bool:
        return session.epoch == self.epoch and self.clock() < session.unlocked_until

    def state(self, session: Session) -> str:
        if self.is_unlocked(session):
            return "unlocked"
        if self.enrollment_error:
            return "recovery_needed"
        if self.verifier is None:
            return "not_enrolled"
        return self.lockout.blocked() or "locked"

    def status(self, session: Session) -> dict:
        state = self.state(session)
        lock = self.lockout.state
        timings = self.timings_ms[-TIMINGS_KEPT:]
        now = self.clock()
        answer = {
            "state": state, "enrolled": self.verifier is not None or bool(self.enrollment_error),
            "user_id": self.user_id, "pin_set": self.pin.is_set(),
            "locked_for": round(self.lockout.remaining(lock), 3) if state == "locked_out" else 0.0,
            "failures": lock.failures, "max_failures": self.lockout.rules.max_failures,
            "lockout_seconds": self.lockout.rules.first_lock_seconds,
            "relock_in": round(session.unlocked_until - now, 3) if state == "unlocked" else None,
            "manage_for": round(max(0.0, session.unlocked_at + MANAGE_SECONDS - now), 3) if state == "unlocked" else 0.0,
            "notice": self._notice(state),
            "median_decision_ms": round(statistics.median(timings), 2) if timings else None,
            "frames_timed": len(timings),
            "source": None if self.source is None else {"frames": len(self.source), "path": str(self.source.path)},
            "history": self.history[-10:],
            "debug": self.debug,
        }
        if self.debug:
            answer["threshold"] = None if self.verifier is None else self.verifier.threshold
        return answer

    def _notice(self, state: str) -> str:
        if not self.enrollment_error:
            return ""
        if not self.pin.is_set():
            return (f"The saved enrollment cannot be used ({self.enrollment_error}) and no PIN was set. "
                    "Only the machine's owner can start over: hyperverify app --reset (forgets the face).")
        then = "enroll again" if state == "unlocked" else "enter the PIN, then enroll again"
        return f"Locked: recovery needed (PIN). The saved enrollment cannot be used ({self.enrollment_error}): {then}."

    def _unlock(self, session: Session) -> None:
        now = self.clock()
        session.unlocked_at, session.unlocked_until, session.epoch = now, now + self.relock_seconds, self.epoch

    # -- actions ----------------------------------------------------------------------------------

    def verify(self, session: Session, frame: bytes, arrived: float | None = None) -> dict:
        """One unlock attempt on one encoded frame; ``arrived`` is when its bytes were received.
        The lockout is checked before the frame is decoded (``Verifier.verify_encoded``)."""
        arrived = time.perf_counter() if arrived is None else arrived
        state = self.state(session)
        if state == "unlocked":
            raise AppError("Already unlocked. Lock the screen to try again.", HTTPStatus.CONFLICT)
        if state in ("recovery_needed", "not_enrolled"):
            return self._answer(session, {"accepted": False, "reason": state, "message": MESSAGES[state]})
        try:
            result = self.verifier.verify_encoded(frame, "the camera frame")
        except ImageError as err:
            raise AppError(f"{err}. Try again.") from None
        elapsed_ms = (time.perf_counter() - arrived) * 1000.0
        if result.reason not in ("locked_out", "pin_required"):
            self.timings_ms.append(elapsed_ms)
            del self.timings_ms[:-TIMINGS_KEPT]
        if result.accepted:
            self._unlock(session)
        lock = self.lockout.state
        message = MESSAGES[result.reason]
        if result.reason == "rejected" and lock.pin_required:
            message = f"Face not recognised: {lock.total_failures} failed attempts. Only the PIN unlocks now."
        elif result.reason == "rejected" and result.locked_for > 0:
            message = f"Face not recognised: {lock.failures} failed attempts in a row. Locked for {result.locked_for:.0f} s."
        elif result.reason == "rejected":
            message += f" Failed attempts: {lock.failures} of {self.lockout.rules.max_failures}."
        decision = {"accepted": bool(result.accepted), "reason": result.reason, "message": message,
                    "decision_ms": round(elapsed_ms, 2), "locked_for": round(result.locked_for, 3)}
        if self.debug:
            decision["score"] = None if result.score is None else round(float(result.score), 4)
            decision["threshold"] = self.verifier.threshold
            decision["mode"] = self.verifier.mode
            decision["escalated"] = result.escalated
            decision["backbone_score"] = None if result.backbone_score is None else round(result.backbone_score, 4)
        self.history.append({k: decision[k] for k in ("reason", "score", "decision_ms") if k in decision})
        del self.history[:-50]
        return self._answer(session, decision)

    def _answer(self, session: Session, decision: dict) -> dict:
        return {**self.status(session), "decision": decision}

    def unlock_with_pin(self, session: Session, pin: str) -> dict:
        """The PIN unlocks this session and clears the face lockout (also after 20 rejects)."""
        self._check_pin(pin)
        self.lockout.reset()
        self._unlock(session)
        return {**self.status(session), "message": "Unlocked with the PIN."}

    def _check_pin(self, pin: str) -> None:
        if not self.pin.is_set():
            raise AppError("No PIN is set on this device.", HTTPStatus.CONFLICT)
        correct, wait = self.pin.try_pin(pin)
        if correct:
            return
        if wait > 0:
            raise AppError(f"Wrong PIN, or too many wrong PINs: PIN entry is locked for {math.ceil(wait)} s.",
                           HTTPStatus.TOO_MANY_REQUESTS)
        raise AppError("Wrong PIN.", HTTPStatus.FORBIDDEN)

    def _require_owner(self, session: Session, pin: str | None, action: str) -> None:
        """Changing the enrollment: a session unlocked less than MANAGE_SECONDS ago, or the PIN."""
        if self.is_unlocked(session) and self.clock() - session.unlocked_at <= MANAGE_SECONDS:
            return
        if pin:
            self._check_pin(pin)
            return
        raise AppError(f"Only the owner can {action}: unlock first (face or PIN; it stays allowed for "
                       f"{MANAGE_SECONDS:.0f} s after an unlock), or enter the PIN with the request.",
                       HTTPStatus.FORBIDDEN)

    def enroll(self, session: Session, images: list[tuple[str, bytes]], pin: str | None = None) -> dict:
        """Enroll from uploaded images (name, bytes) through the backend; afterwards every session is
        locked. The first enrollment sets the PIN (``pin``); later ones need the owner (see above)."""
        first = self.state(session) == "not_enrolled"
        if first:
            try:
                check_new_pin(pin)
            except PinError as err:
                raise AppError(str(err)) from None
        else:
            self._require_owner(session, pin, "change the enrolled face")
        if not images:
            raise AppError("No images received. Choose one or more photos, or enroll from the camera.")
        if len(images) > MAX_ENROLL_IMAGES:
            raise AppError(f"{len(images)} images: enrollment takes at most {MAX_ENROLL_IMAGES}.")
        for name, data in images:
            try:
                decode_image(data, name)
            except ImageError as err:
                raise AppError(f"{err}. Enrollment needs photos (JPEG or PNG) of one face.") from None
        from hyperverify.sdk.export_user import export_user  # the backend: torch, the backbone

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="enroll-", dir=self.state_dir) as tmp:
            paths = []
            for index, (name, data) in enumerate(images):
                path = Path(tmp) / "upload" / f"{index + 1:02d}-{_safe_name(name)}"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(data)
                paths.append(path)
            try:
                written = export_user(paths, self.bundle, Path(tmp) / "out", self.user_id,
                                      signing_key=self.signing_key, coreml=False)
            except FaceNotFoundError as err:
                shown = str(err).replace(str(Path(tmp) / "upload") + os.sep, "")
                raise AppError(f"Enrollment failed: {shown}.") from None
            self.users.mkdir(parents=True, exist_ok=True)
            for path in written:
                os.replace(path, self.users / path.name)
        if first:
            self.pin.set(pin)
        self.lockout.reset()
        self.epoch += 1
        self._open_enrollment()
        answer = self.status(session)
        answer["message"] = (f"Enrolled from {len(images)} image{'s' if len(images) > 1 else ''}. "
                             "The screen is locked: look at the camera and press Unlock.")
        return answer

    def lock(self, session: Session) -> dict:
        session.unlocked_until = -math.inf
        return self.status(session)

    def forget(self, session: Session, pin: str | None = None) -> dict:
        """Delete the enrolled face, its PIN and its lockout state (the owner only, see above)."""
        self._require_owner(session, pin, "delete the enrolled face")
        for path in self.users.glob(f"{self.user_id}*.hvu"):
            path.unlink()
        self.pin.remove()
        self.lockout.reset()
        self.epoch += 1
        self._open_enrollment()
        answer = self.status(session)
        answer["message"] = "Enrollment and PIN deleted."
        return answer


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "image").name)[-80:] or "image"


# -- serving ----------------------------------------------------------------------------------------

def serve(bundle: Path | None, state_dir: Path, *, port: int = DEFAULT_PORT, source: Path | None = None,
          model: Path | None = None, lockout_seconds: float = FIRST_LOCK_SECONDS,
          relock_seconds: float = RELOCK_SECONDS, debug: bool = False, signing_key: Path | None = None,
          reset: bool = False, out=sys.stdout) -> int:
    """Start the app and serve until interrupted (what ``hyperverify app`` runs)."""
    from hyperverify.sample_app.web import listen, run

    state_dir = Path(state_dir)
    frames = FrameSource(source) if source else None
    if bundle is None:
        print(f"building the bundle in {state_dir / 'bundle'} (first start, or the model changed) ...", file=out, flush=True)
        bundle, built = ensure_bundle(state_dir / "bundle", model, signing_key)
        print(f"bundle: {bundle} ({'built' if built else 'up to date'})", file=out, flush=True)
    if reset:
        shutil.rmtree(state_dir / "users", ignore_errors=True)
        shutil.rmtree(state_dir / "lockout", ignore_errors=True)
    app = UnlockApp(Path(bundle), state_dir, lockout_seconds=lockout_seconds, relock_seconds=relock_seconds,
                    debug=debug, signing_key=signing_key, source=frames)
    sock = listen(HOST, port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    who = {"not_enrolled": "nobody enrolled yet", "recovery_needed": "locked: recovery needed (PIN)"}.get(
        app.state(Session("")), f"enrolled: {app.user_id}")
    where = f"frames from {source} ({len(frames)})" if frames else "the browser's camera"
    print(f"hyperverify app: {url}  ({who}; {where}; lockout {app.lockout.rules.max_failures} failures / "
          f"{lockout_seconds:g} s, escalating; re-locks after {relock_seconds:g} s"
          f"{'; DEBUG: scores shown' if debug else ''}). Ctrl-C stops it.", file=out, flush=True)
    run(app, sock)
    return 0


__all__ = ["UnlockApp", "Session", "FrameSource", "serve", "ensure_bundle", "app_trust", "MESSAGES", "AppError"]
