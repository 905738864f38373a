"""The unlock-screen prototype: a local web page in front of the on-device runtime.

    hyperverify app                      # builds a bundle from the default model, serves on 127.0.0.1:8765
    hyperverify app --source photos/     # no camera: play a folder of images (or a .y4m video) instead

The page is the phone: it shows the camera, sends frames (JPEG) to this server and draws the lock
screen from the answers. The server plays two parts and keeps them apart:

- the device: ``hyperverify.runtime.load`` and ``Verifier.verify`` only (what an app ships), with the
  runtime's lockout policy (``max_failures`` rejected attempts in a row lock for ``lockout_seconds``);
- the backend: enrollment through ``hyperverify.sdk.export_user.export_user`` (what a phone would ask a
  server to do), which writes the user's ``.hvu`` file that the device then loads.

Rules of the prototype, as on a phone: anyone may enroll while nobody is enrolled; after that,
changing or deleting the enrolled face needs the screen unlocked. Pressing Unlock is one attempt
(one frame). Only ``accepted`` and ``rejected`` count towards the lockout (the runtime's rule).

Every device operation runs on one worker thread (the runtime's detector and verifier are not
thread-safe, like a camera loop), HTTP requests on their own threads. The server binds 127.0.0.1
only and never crashes on a request: bad input gets a JSON ``{"error": ...}`` in plain words.
"""

from __future__ import annotations

import concurrent.futures
import email.parser
import email.policy
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from hyperverify.runtime import LockoutPolicy, load
from hyperverify.runtime.errors import FaceNotFoundError, HyperverifyError, ImageError
from hyperverify.runtime.faces import FaceDetector
from hyperverify.runtime.image_io import decode_image
from hyperverify.runtime.manifest import read_manifest, sha256_bytes
from hyperverify.runtime.verifier import LOCKOUT_SECONDS, MAX_FAILURES
from hyperverify.sample_app.frames import FrameSource

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
                "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
                "/static/style.css": ("style.css", "text/css; charset=utf-8")}
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_ENROLL_IMAGES = 10
TIMINGS_KEPT = 1000

MESSAGES = {
    "accepted": "Face recognised: unlocked.",
    "rejected": "Face not recognised. The screen stays locked.",
    "no_face": "No face found. Look straight at the camera.",
    "several_faces": "More than one face in view. Only the phone's owner should be in the picture.",
    "face_too_small": "The face is too far away. Move closer to the camera.",
    "low_quality": "The picture is too blurry or unclear. Hold still, in good light.",
    "locked_out": "Too many failed attempts. Wait until the countdown ends.",
    "not_enrolled": "Nobody is enrolled yet. Enroll a face first (Enroll panel).",
}
"""Each runtime reason (``Result.reason``) in plain words, as the page shows it."""


class AppError(HyperverifyError):
    """A request the app refuses, with the message the page shows; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


# -- the bundle -------------------------------------------------------------------------------------

def ensure_bundle(target: Path, model: Path | None = None) -> tuple[Path, bool]:
    """A bundle in ``target`` built from ``model`` (default: the committed model), rebuilt when the
    model's bytes differ from the bundle's enrollment model. Returns (bundle, built now)."""
    from hyperverify.converters.bundle import build_bundle
    from hyperverify.sdk.enroll import DEFAULT_MODEL, load_default
    from hyperverify.sdk.export_user import ENROLLMENT_MODEL, bundle_inputs

    model_path = Path(model or DEFAULT_MODEL)
    model_bytes = model_path.read_bytes() if model_path.is_file() else None
    if model_bytes is not None:
        try:
            if read_manifest(target).files.get(ENROLLMENT_MODEL) == sha256_bytes(model_bytes):
                return target, False
        except HyperverifyError:
            pass  # no bundle yet, or a broken one: build it
    hyper, extra = load_default(model_path)
    build_bundle(bundle_inputs(hyper, extra, model_bytes, coreml=False), target)
    return target, True


# -- the app: device + backend, no HTTP -------------------------------------------------------------

class UnlockApp:
    """The lock screen's state and its three actions: enroll, verify (one attempt), lock.

    Public methods return the JSON-able ``status()`` dict (plus ``decision`` for ``verify``) or raise
    ``AppError`` with a message for the page. Call them from one thread (``Server`` does).
    """

    def __init__(self, bundle: Path, state_dir: Path, *, lockout_seconds: float = LOCKOUT_SECONDS,
                 max_failures: int = MAX_FAILURES, user_id: str = "owner", signing_key: Path | None = None,
                 source: FrameSource | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if lockout_seconds <= 0 or max_failures < 1:
            raise HyperverifyError("the lockout needs lockout_seconds > 0 and max_failures >= 1")
        self.bundle, self.state_dir = Path(bundle), Path(state_dir)
        self.user_id, self.signing_key, self.source = user_id, signing_key, source
        self.threshold = read_manifest(self.bundle).threshold
        self.policy = LockoutPolicy(max_failures, lockout_seconds, clock)
        self.detector = FaceDetector()
        self.verifier = None
        self.unlocked = False
        self.notice = ""
        self.timings_ms: list[float] = []
        self.history: list[dict] = []
        if self.user_file.exists():
            try:
                self._load_verifier()
            except HyperverifyError as err:
                self.notice = f"The saved enrollment cannot be used ({err}). Enroll again."

    @property
    def user_file(self) -> Path:
        return self.state_dir / "users" / f"{self.user_id}.hvu"

    def _load_verifier(self) -> None:
        self.verifier = load(self.bundle, self.user_file, policy=self.policy, detector=self.detector)
        self.threshold = self.verifier.threshold

    def state(self) -> str:
        if self.verifier is None:
            return "not_enrolled"
        if self.policy.remaining() > 0:
            return "locked_out"
        return "unlocked" if self.unlocked else "locked"

    def status(self) -> dict:
        timings = self.timings_ms[-TIMINGS_KEPT:]
        return {
            "state": self.state(), "enrolled": self.verifier is not None, "user_id": self.user_id,
            "locked_for": round(self.policy.remaining(), 3), "failures": self.policy.failures,
            "max_failures": self.policy.max_failures, "lockout_seconds": self.policy.seconds,
            "threshold": self.threshold, "notice": self.notice,
            "median_decision_ms": round(statistics.median(timings), 2) if timings else None,
            "frames_timed": len(timings),
            "source": None if self.source is None else {"frames": len(self.source), "path": str(self.source.path)},
            "history": self.history[-10:],
        }

    def verify(self, frame: bytes, arrived: float | None = None) -> dict:
        """One unlock attempt on one encoded frame; ``arrived`` is when its bytes were received."""
        arrived = time.perf_counter() if arrived is None else arrived
        if self.verifier is None:
            return self._answer({"accepted": False, "reason": "not_enrolled", "message": MESSAGES["not_enrolled"]})
        if not frame:
            raise AppError("The camera frame was empty (0 bytes). Wait until the camera shows a picture.")
        try:
            rgb = decode_image(frame, "the camera frame")
        except ImageError as err:
            raise AppError(f"{err}. Try again.") from None
        result = self.verifier.verify(rgb, color_order="rgb")
        elapsed_ms = (time.perf_counter() - arrived) * 1000.0
        if result.reason != "locked_out":
            self.timings_ms.append(elapsed_ms)
            del self.timings_ms[:-TIMINGS_KEPT]
        if result.accepted:
            self.unlocked = True
        message = MESSAGES[result.reason]
        if result.reason == "rejected" and result.locked_for > 0:
            message = f"Face not recognised: {self.policy.max_failures} failed attempts in a row. Locked."
        elif result.reason == "rejected":
            message += f" Failed attempts: {self.policy.failures} of {self.policy.max_failures}."
        decision = {"accepted": bool(result.accepted), "reason": result.reason, "message": message,
                    "score": None if result.score is None else round(float(result.score), 4),
                    "threshold": self.threshold, "decision_ms": round(elapsed_ms, 2),
                    "locked_for": round(result.locked_for, 3)}
        self.history.append({k: decision[k] for k in ("reason", "score", "decision_ms")})
        del self.history[:-50]
        return self._answer(decision)

    def _answer(self, decision: dict) -> dict:
        return {**self.status(), "decision": decision}

    def _require_owner_or_nobody(self, action: str) -> None:
        if self.verifier is not None and self.state() != "unlocked":
            raise AppError(f"Unlock the screen first: only the owner can {action}.", HTTPStatus.FORBIDDEN)

    def enroll(self, images: list[tuple[str, bytes]]) -> dict:
        """Enroll from uploaded images (name, bytes) through the backend; afterwards the screen is locked."""
        self._require_owner_or_nobody("change the enrolled face")
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
            self.user_file.parent.mkdir(parents=True, exist_ok=True)
            for path in written:
                os.replace(path, self.user_file.parent / path.name)
        self._load_verifier()
        self.unlocked = False
        self.notice = ""
        answer = self.status()
        answer["message"] = (f"Enrolled from {len(images)} image{'s' if len(images) > 1 else ''}. "
                             "The screen is locked: look at the camera and press Unlock.")
        return answer

    def lock(self) -> dict:
        self.unlocked = False
        return self.status()

    def forget(self) -> dict:
        """Delete the enrolled face (needs the screen unlocked)."""
        self._require_owner_or_nobody("delete the enrolled face")
        for path in self.user_file.parent.glob(f"{self.user_id}*.hvu"):
            path.unlink()
        self.verifier, self.unlocked = None, False
        answer = self.status()
        answer["message"] = "Enrollment deleted."
        return answer


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "image").name)[-80:] or "image"


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """(field name, file name, bytes) of each part of a multipart/form-data body."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise AppError("Send the images as multipart/form-data (a form with file fields).")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise AppError("The upload could not be read as multipart/form-data.")
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True) or b""
        parts.append((part.get_param("name", "", header="content-disposition"), part.get_filename() or "", payload))
    return parts


# -- HTTP -------------------------------------------------------------------------------------------

class Server(ThreadingHTTPServer):
    """HTTP on 127.0.0.1; every app call runs on one worker thread (the device's camera loop)."""

    daemon_threads = True

    def __init__(self, app: UnlockApp, port: int = DEFAULT_PORT) -> None:
        super().__init__((HOST, port), Handler)
        self.app = app
        self.worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="device")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def call(self, method: Callable, *args) -> dict:
        return self.worker.submit(method, *args).result()

    def server_close(self) -> None:
        super().server_close()
        self.worker.shutdown(wait=False, cancel_futures=True)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "hyperverify-app"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if os.environ.get("HYPERVERIFY_APP_LOG"):
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: dict, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except AppError as err:
            self._json({"error": str(err), **self.server.call(self.server.app.status)}, err.status)
        except HyperverifyError as err:
            self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as err:  # a bug: keep serving, tell the page, log the traceback
            traceback.print_exc(file=sys.stderr)
            try:
                self._json({"error": f"Internal error ({type(err).__name__}: {err}). The app keeps running."},
                           HTTPStatus.INTERNAL_SERVER_ERROR)
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), content_type)
        elif path == "/api/status":
            self._json(self.server.call(app.status))
        elif match := re.fullmatch(r"/api/source/(\d{1,9})\.jpg", path):
            if app.source is None:
                raise AppError("This app was started without --source: the page uses the camera.", HTTPStatus.NOT_FOUND)
            try:
                self._send(HTTPStatus.OK, app.source.jpeg(int(match.group(1))), "image/jpeg")
            except ImageError as err:
                raise AppError(f"Source frame {int(match.group(1)) + 1} cannot be shown: {err}") from None
        else:
            raise AppError(f"No such page: {path}", HTTPStatus.NOT_FOUND)

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise AppError("Bad Content-Length header.") from None
        if length < 0:
            raise AppError("Bad Content-Length header.")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise AppError(f"The upload is {length / 2**20:.0f} MiB; the limit is {MAX_BODY_BYTES // 2**20} MiB.",
                           HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return self.rfile.read(length) if length else b""

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        app, call = self.server.app, self.server.call
        body = self._body()
        arrived = time.perf_counter()
        if path == "/api/verify":
            self._json(call(app.verify, body, arrived))
        elif path == "/api/enroll":
            parts = parse_multipart(self.headers.get("Content-Type", ""), body)
            images = [(filename or f"image {i + 1}", data) for i, (_, filename, data) in enumerate(parts) if filename]
            self._json(call(app.enroll, images))
        elif path == "/api/lock":
            self._json(call(app.lock))
        elif path == "/api/forget":
            self._json(call(app.forget))
        else:
            raise AppError(f"No such action: {path}", HTTPStatus.NOT_FOUND)


def serve(bundle: Path | None, state_dir: Path, *, port: int = DEFAULT_PORT, source: Path | None = None,
          model: Path | None = None, lockout_seconds: float = LOCKOUT_SECONDS, signing_key: Path | None = None,
          reset: bool = False, out=sys.stdout) -> int:
    """Start the app and serve until interrupted (what ``hyperverify app`` runs)."""
    state_dir = Path(state_dir)
    frames = FrameSource(source) if source else None
    if bundle is None:
        print(f"building the bundle in {state_dir / 'bundle'} (first start, or the model changed) ...", file=out, flush=True)
        bundle, built = ensure_bundle(state_dir / "bundle", model)
        print(f"bundle: {bundle} ({'built' if built else 'up to date'})", file=out, flush=True)
    if reset:
        shutil.rmtree(state_dir / "users", ignore_errors=True)
    app = UnlockApp(Path(bundle), state_dir, lockout_seconds=lockout_seconds, signing_key=signing_key, source=frames)
    try:
        server = Server(app, port)
    except OSError as err:
        raise HyperverifyError(f"cannot listen on {HOST}:{port} ({err.strerror}); choose another --port") from None
    who = f"enrolled: {app.user_id}" if app.verifier is not None else "nobody enrolled yet"
    where = f"frames from {source} ({len(frames)})" if frames else "the browser's camera"
    print(f"hyperverify app: {server.url}  ({who}; {where}; lockout {app.policy.max_failures} failures / "
          f"{lockout_seconds:g} s). Ctrl-C stops it.", file=out, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


__all__ = ["UnlockApp", "FrameSource", "Server", "serve", "ensure_bundle", "MESSAGES"]
