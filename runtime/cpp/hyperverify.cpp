// The C ABI (hyperverify.h) over the C++ pieces: manifest, user_file,
// lockout, preprocess, runner.
#include "hyperverify.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "cascade.h"
#include "files.h"
#include "frame.h"
#include "lockout.h"
#include "manifest.h"
#include "preprocess.h"
#include "runner.h"
#include "user_file.h"

struct hv_handle {
  std::unique_ptr<hyperverify::Runner> runner;
  hyperverify::UserWeights weights;
  float threshold = 0.0f;     // max(user's, manifest's)
  std::string lockout_path;   // empty: no lockout attached
  std::unique_ptr<hyperverify::Backbone> backbone;  // set when the cascade runs
  hyperverify::Band band;     // the user's band (cascade only)
  std::unique_ptr<hyperverify::Detector> detector;  // set when the bundle ships the detector program
  int frames_required = 1;    // k of n (hv_set_frames_required)
  int window = 1;
  int window_frames = 0;      // judged frames in the current window (it never slides: it starts afresh)
  int window_accepts = 0;     // of which f or the cascade accepted
};

namespace {

int report(const hyperverify::Error& error, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) {
    size_t n = std::min(error.message.size(), err_len - 1);
    std::memcpy(err, error.message.data(), n);
    err[n] = '\0';
  }
  return error.code;
}

// The policy's own consistency (runtime/trust.py TrustPolicy.__post_init__).
hyperverify::Status check_trust(const hv_trust& trust, bool allow_unsigned) {
  using hyperverify::fail;
  if (trust.user_files < HV_USER_FILES_BACKEND || trust.user_files > HV_USER_FILES_EITHER)
    return fail(HV_BAD_INPUT, "user_files must be HV_USER_FILES_BACKEND, _DEVICE or _EITHER");
  bool device_key = trust.device_key != nullptr;
  if (trust.user_files == HV_USER_FILES_BACKEND && device_key)
    return fail(HV_BAD_INPUT, "a device key was given but the policy accepts only backend-signed user files");
  if (trust.user_files != HV_USER_FILES_BACKEND) {
    if (allow_unsigned || trust.public_key32 == nullptr)
      return fail(HV_BAD_INPUT, "a device key goes with a signed policy: the bundle is the backend's either way");
    if (!device_key || trust.device_key_len < hyperverify::kMinDeviceKeyBytes)
      return fail(HV_BAD_INPUT, "a device key is at least 32 random bytes");
  }
  return hyperverify::Ok{};
}

int open_impl(const char* bundle_dir, const char* user_path, const hv_trust& trust, unsigned flags,
              hv_handle** out, char* err, size_t err_len) {
  using namespace hyperverify;
  const uint8_t* public_key32 = trust.public_key32;
  if (out == nullptr || bundle_dir == nullptr || user_path == nullptr)
    return report(fail(HV_BAD_INPUT, "hv_open needs a bundle folder, a user file path and out"), err,
                  err_len);
  if (flags & ~(HV_ALLOW_UNSIGNED | HV_F_ONLY))
    return report(fail(HV_BAD_INPUT, "unknown hv_open flags"), err, err_len);
  bool allow_unsigned = (flags & HV_ALLOW_UNSIGNED) != 0;
  if (public_key32 != nullptr && allow_unsigned)
    return report(fail(HV_BAD_INPUT, "a public key and HV_ALLOW_UNSIGNED contradict each other"), err, err_len);
  if (public_key32 == nullptr && !allow_unsigned)
    return report(fail(HV_SIGNATURE, "no public key: pass the backend's Ed25519 key, or opt out of "
                                     "signatures explicitly with HV_ALLOW_UNSIGNED"),
                  err, err_len);
  auto policy = check_trust(trust, allow_unsigned);
  if (!policy.ok()) return report(policy.error(), err, err_len);
  std::string bundle(bundle_dir);
  auto manifest = open_manifest(bundle, public_key32);
  if (!manifest.ok()) return report(manifest.error(), err, err_len);
  const Manifest& m = manifest.value();
  auto role = m.programs.find(kProgramRole);
  if (role == m.programs.end())
    return report(fail(HV_BUNDLE, bundle + ": the manifest names no " + kProgramRole + " program"), err,
                  err_len);
  auto program = checked_file(bundle, m, role->second);
  if (!program.ok()) return report(program.error(), err, err_len);
  auto runner = Runner::load(std::move(program.value()), bundle + "/" + role->second);
  if (!runner.ok()) return report(runner.error(), err, err_len);
  // The runtime cannot recompute the layout hash from `generated` (runtime/spec.py owns it): it
  // checks the manifest's hash and slice count against the program's.
  if (int_to_hash(runner.value()->layout_hash()) != m.layout_hash ||
      int_to_hash(runner.value()->model_version()) != m.model_version ||
      runner.value()->user_input_count() != m.generated.size())
    return report(fail(HV_BUNDLE, bundle + ": the program's layout, slices or model version differ from the manifest's"),
                  err, err_len);
  auto data = read_bounded(user_path, kMaxUserFileBytes, HV_LENGTH);
  if (!data.ok()) return report(data.error(), err, err_len);
  DecodeOptions options;
  if (trust.user_files != HV_USER_FILES_DEVICE) options.public_key = public_key32;
  if (trust.user_files != HV_USER_FILES_BACKEND) {
    options.device_key = trust.device_key;
    options.device_key_size = trust.device_key_len;
  }
  options.require_signature = !allow_unsigned;
  options.expected_layout = m.layout_hash;
  auto weights = decode_user_file(data.value().data(), data.value().size(), options);
  if (!weights.ok()) {
    Error error = weights.error();
    error.message = std::string(user_path) + ": " + error.message;
    return report(error, err, err_len);
  }
  if (weights.value().model_version != m.model_version)
    return report(fail(HV_MODEL_VERSION, std::string(user_path) + ": enrolled with model " +
                                             weights.value().model_version + ", the bundle ships model " +
                                             m.model_version + "; re-enroll the user"),
                  err, err_len);
  auto set = runner.value()->set_user_values(weights.value().theta);
  if (!set.ok()) return report(set.error(), err, err_len);
  auto handle = std::make_unique<hv_handle>();
  handle->runner = std::move(runner.value());
  handle->weights = std::move(weights.value());
  // The floor (trust.py calibrated_floor): the manifest's threshold for both kinds of file, since a
  // device-made file holds the backend's refined head too (the bundle's refinement program made
  // it); one made for a bundle without on-device enrollment came from another bundle. Rounded up
  // to float so that the comparison with a float logit never dips below it (a floor above the
  // largest float becomes +inf: no finite logit reaches it, as in Python).
  if (handle->weights.device_made && m.enrollment_thresholds.empty())
    return report(fail(HV_BUNDLE, "a device-made user file, but this bundle ships no enrollment program"), err,
                  err_len);
  double calibrated = m.threshold;
  float floor;
  if (calibrated > static_cast<double>(FLT_MAX)) {
    floor = INFINITY;
  } else if (calibrated < -static_cast<double>(FLT_MAX)) {
    floor = -INFINITY;
  } else {
    floor = static_cast<float>(calibrated);
    if (static_cast<double>(floor) < calibrated) floor = std::nextafter(floor, INFINITY);
  }
  handle->threshold = std::max(handle->weights.threshold, floor);
  const char* kind = handle->weights.device_made ? "device" : "backend";
  if (m.cascade && m.cascade->count(kind) && !handle->weights.embedding.empty() && !(flags & HV_F_ONLY)) {
    const std::string& path = m.programs.at(kEnrollmentRole);
    auto backbone_program = checked_file(bundle, m, path);
    if (!backbone_program.ok()) return report(backbone_program.error(), err, err_len);
    auto backbone = Backbone::load(std::move(backbone_program.value()), bundle + "/" + path);
    if (!backbone.ok()) return report(backbone.error(), err, err_len);
    handle->backbone = std::move(backbone.value());
    handle->band = band_for(*m.cascade, kind, handle->weights.photos, handle->threshold);
  }
  auto detector_role = m.programs.find(kDetectorRole);
  if (detector_role != m.programs.end()) {
    auto detector_program = checked_file(bundle, m, detector_role->second);
    if (!detector_program.ok()) return report(detector_program.error(), err, err_len);
    auto detector = Detector::load(std::move(detector_program.value()), bundle + "/" + detector_role->second);
    if (!detector.ok()) return report(detector.error(), err, err_len);
    handle->detector = std::move(detector.value());
  }
  *out = handle.release();
  return HV_OK;
}

// Lockout check before anything is computed; HV_OK when an attempt may run.
int before_attempt(hv_handle* handle) {
  if (handle->lockout_path.empty()) return HV_OK;
  return hyperverify::attempt_allowed(hyperverify::read_lockout(handle->lockout_path), hyperverify::unix_now());
}

// The decision on a logit (and, for an escalated 112x112 crop, the backbone's cosine).
hyperverify::Status decide(hv_handle* handle, float logit, const uint8_t* crop112, hv_decision* decision) {
  decision->logit = logit;
  decision->escalated = 0;
  decision->backbone_score = std::nanf("");
  if (!handle->backbone) {
    decision->accepted = std::isfinite(logit) && logit >= handle->threshold;
    return hyperverify::Ok{};
  }
  if (handle->band.escalates(logit) && crop112 != nullptr) {
    auto embedding = handle->backbone->embed(crop112);
    if (!embedding.ok()) return embedding.error();
    decision->escalated = 1;
    decision->backbone_score = hyperverify::cosine(embedding.value(), handle->weights.embedding);
  }
  decision->accepted = handle->band.decide(logit, decision->backbone_score);
  return hyperverify::Ok{};
}

int finish(hv_handle* handle, const hyperverify::Result<float>& logit, const uint8_t* crop112, hv_decision* out) {
  hv_decision decision{};
  *out = decision;
  if (!logit.ok()) return logit.error().code;
  auto decided = decide(handle, logit.value(), crop112, &decision);
  if (!decided.ok()) return decided.error().code;
  // k of n, as runtime/verifier.py Verifier._judge: a frame decides when it completes k accepts or fills
  // the window, and a completed window starts afresh even when its decision cannot be recorded. The
  // window is one attempt, recorded as rejected when it opens (the accept that completes it clears the
  // count), so that a restart dropping an open window cannot drop its attempt.
  handle->window_frames += 1;
  handle->window_accepts += decision.accepted != 0;
  bool accept = handle->window_accepts >= handle->frames_required;
  bool records = accept || handle->window_frames == 1;
  decision.accepted = accept ? 1 : 0;
  if (accept || handle->window_frames >= handle->window) handle->window_frames = handle->window_accepts = 0;
  if (records && !handle->lockout_path.empty()) {
    double now = hyperverify::unix_now();
    auto state = hyperverify::read_lockout(handle->lockout_path);
    int allowed = hyperverify::attempt_allowed(state, now);
    if (allowed != HV_OK) return allowed;  // another process locked it meanwhile
    auto written = hyperverify::write_lockout(handle->lockout_path,
                                              hyperverify::record_attempt(state, accept, now));
    if (!written.ok()) return HV_IO;  // an unrecorded decision never accepts
  }
  *out = decision;
  return HV_OK;
}

int verify_crop(hv_handle* handle, const uint8_t* rgb, int height, int width, int channels, hv_decision* out) {
  *out = hv_decision{};
  if (handle == nullptr) return HV_BAD_INPUT;
  int allowed = before_attempt(handle);  // before the crop is touched
  if (allowed != HV_OK) return allowed;
  auto status = hyperverify::preprocess_crop(rgb, height, width, channels, handle->runner->input());
  if (!status.ok()) return status.error().code;
  const uint8_t* crop112 = height == HV_CROP_SIZE && width == HV_CROP_SIZE ? rgb : nullptr;
  return finish(handle, handle->runner->forward(), crop112, out);
}

// The frame as contiguous RGB (what the detector input and the warp read).
std::vector<uint8_t> frame_rgb(const uint8_t* pixels, int height, int width, size_t row_bytes, int layout) {
  int channels = layout == HV_FRAME_BGR || layout == HV_FRAME_RGB ? 3 : 4;
  bool bgr = layout == HV_FRAME_BGR || layout == HV_FRAME_BGRA;
  std::vector<uint8_t> rgb(static_cast<size_t>(height) * width * 3);
  for (int y = 0; y < height; y++) {
    const uint8_t* row = pixels + static_cast<size_t>(y) * row_bytes;
    uint8_t* out = rgb.data() + static_cast<size_t>(y) * width * 3;
    for (int x = 0; x < width; x++, row += channels, out += 3) {
      out[0] = row[bgr ? 2 : 0];
      out[1] = row[1];
      out[2] = row[bgr ? 0 : 2];
    }
  }
  return rgb;
}

void describe_face(const hyperverify::Face& face, hv_frame_decision* out) {
  for (int k = 0; k < 4; k++) out->box[k] = static_cast<float>(face.box[k]);
  for (int k = 0; k < 10; k++) out->landmarks[k] = static_cast<float>(face.landmarks[k]);
  out->detector_score = static_cast<float>(face.score);
}

int verify_frame(hv_handle* handle, const uint8_t* pixels, int height, int width, size_t row_bytes, int layout,
                 hv_frame_decision* out) {
  using namespace hyperverify;
  if (handle == nullptr || pixels == nullptr || layout < HV_FRAME_BGR || layout > HV_FRAME_RGBA || height < 1 ||
      width < 1 || height > HV_MAX_FRAME_SIDE || width > HV_MAX_FRAME_SIDE)
    return HV_BAD_INPUT;
  size_t channels = layout == HV_FRAME_BGR || layout == HV_FRAME_RGB ? 3 : 4;
  if (row_bytes < static_cast<size_t>(width) * channels) return HV_BAD_INPUT;
  if (!handle->detector) return HV_BUNDLE;
  int allowed = before_attempt(handle);  // before the frame is touched
  if (allowed != HV_OK) return allowed;
  std::vector<uint8_t> rgb = frame_rgb(pixels, height, width, row_bytes, layout);
  DetectorInput input = detector_input(rgb.data(), height, width);
  auto heads = handle->detector->run(input.chw, input.height, input.width);
  if (!heads.ok()) return heads.error().code;
  std::vector<Face> faces = decode_faces(heads.value(), input);
  if (faces.empty()) {
    out->reason = HV_REASON_NO_FACE;
    return HV_OK;
  }
  const Face& face = faces[0];
  describe_face(face, out);
  if (faces.size() > 1 && faces[1].area() >= kAmbiguousArea * face.area()) {
    out->reason = HV_REASON_SEVERAL_FACES;
    return HV_OK;
  }
  if (std::min(face.box[2], face.box[3]) < kMinFacePx) {
    out->reason = HV_REASON_FACE_TOO_SMALL;
    return HV_OK;
  }
  uint8_t crop[HV_CROP_SIZE * HV_CROP_SIZE * 3];
  align_crop(rgb.data(), height, width, face.landmarks, crop);
  if (face.score < kMinDetectorScore || sharpness(crop) < kMinSharpness) {
    out->reason = HV_REASON_LOW_QUALITY;
    return HV_OK;
  }
  auto status = preprocess_crop(crop, HV_CROP_SIZE, HV_CROP_SIZE, 3, handle->runner->input());
  if (!status.ok()) return status.error().code;
  int decided = finish(handle, handle->runner->forward(), crop, &out->decision);
  if (decided == HV_OK) out->reason = out->decision.accepted ? HV_REASON_ACCEPTED : HV_REASON_REJECTED;
  return decided;
}

hyperverify::Status enroll_impl(const char* bundle_dir, const hv_trust& trust, const uint8_t* crops, int count,
                                const char* user_id, const char* out_path) {
  using namespace hyperverify;
  if (bundle_dir == nullptr || crops == nullptr || user_id == nullptr || out_path == nullptr)
    return fail(HV_BAD_INPUT, "hv_enroll needs a bundle folder, crops, a user id and an output path");
  if (trust.public_key32 == nullptr || trust.device_key == nullptr || trust.device_key_len < kMinDeviceKeyBytes)
    return fail(HV_BAD_INPUT, "hv_enroll needs the backend's public key (the bundle's) and a device key of at "
                              "least 32 bytes");
  if (!valid_user_id(user_id)) return fail(HV_BAD_INPUT, "the user id is not UTF-8 of at most 32 bytes");
  std::string bundle(bundle_dir);
  auto manifest = open_manifest(bundle, trust.public_key32);
  if (!manifest.ok()) return manifest.error();
  const Manifest& m = manifest.value();
  auto role = m.programs.find(kEnrollmentRole);
  auto refinement_role = m.programs.find(kRefinementRole);
  if (role == m.programs.end() || refinement_role == m.programs.end() || m.enrollment_thresholds.empty())
    return fail(HV_BUNDLE, bundle + ": this bundle ships no enrollment program; rebuild it with `hyperverify build-sdk`");
  if (count < 1 || count > m.max_crops)
    return fail(HV_BAD_INPUT, "enrollment takes 1 to " + std::to_string(m.max_crops) + " faces, got " +
                                  std::to_string(count));
  // Both programs are checked and loaded before either runs: a bundle that cannot finish an
  // enrollment is refused before the crops are computed on.
  auto program = checked_file(bundle, m, role->second);
  if (!program.ok()) return program.error();
  auto backbone = Backbone::load(std::move(program.value()), bundle + "/" + role->second);
  if (!backbone.ok()) return backbone.error();
  auto refinement_program = checked_file(bundle, m, refinement_role->second);
  if (!refinement_program.ok()) return refinement_program.error();
  auto refiner = Refiner::load(std::move(refinement_program.value()), bundle + "/" + refinement_role->second);
  if (!refiner.ok()) return refiner.error();
  auto made = backbone.value()->run(crops, count);
  if (!made.ok()) return made.error();
  UserWeights weights;
  weights.embedding = std::move(made.value().first);
  const std::vector<float>& generated = made.value().second;
  if (weights.embedding.size() != kEmbeddingSize || generated.empty() || generated.size() > kMaxCount)
    return fail(HV_PROGRAM, "the enrollment program's outputs have the wrong sizes");
  // The refinement sees each crop as f does (the same reduction and normalisation as a verified
  // crop): the positives it fits the generated head to are f's features of the user's photos.
  std::vector<float> small(static_cast<size_t>(count) * HV_INPUT_VALUES);
  for (int k = 0; k < count; k++) {
    auto status = preprocess_crop(crops + static_cast<size_t>(k) * HV_CROP_SIZE * HV_CROP_SIZE * 3, HV_CROP_SIZE,
                                  HV_CROP_SIZE, 3, small.data() + static_cast<size_t>(k) * HV_INPUT_VALUES);
    if (!status.ok()) return status.error();
  }
  auto refined = refiner.value()->run(small, count, generated);
  if (!refined.ok()) return refined.error();
  weights.theta = std::move(refined.value());
  for (float v : weights.theta)
    if (!std::isfinite(v) || std::fabs(v) >= 65520.0f) return fail(HV_VALUES, "theta overflows float16");
  // The refined heads' threshold for this many photos (manifest.py enrollment_threshold), as the
  // backend gives a user it enrolls from as many.
  weights.threshold = static_cast<float>(m.enrollment_threshold_for(count));
  weights.layout_hash = m.layout_hash;
  weights.model_version = m.model_version;
  weights.user_id = user_id;
  weights.photos = count;
  auto bytes = encode_device_file(weights, trust.device_key, trust.device_key_len);
  return write_atomic(out_path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace

extern "C" {

int hv_open(const char* bundle_dir, const char* user_path, const uint8_t* public_key32, unsigned flags,
            hv_handle** out, char* err, size_t err_len) {
  hv_trust trust{public_key32, nullptr, 0, HV_USER_FILES_BACKEND};
  return hv_open_trusted(bundle_dir, user_path, &trust, flags, out, err, err_len);
}

int hv_open_trusted(const char* bundle_dir, const char* user_path, const hv_trust* trust, unsigned flags,
                    hv_handle** out, char* err, size_t err_len) {
  if (out != nullptr) *out = nullptr;
  if (err != nullptr && err_len > 0) err[0] = '\0';
  if (trust == nullptr) return report(hyperverify::fail(HV_BAD_INPUT, "hv_open_trusted needs a policy"), err, err_len);
  try {
    return open_impl(bundle_dir, user_path, *trust, flags, out, err, err_len);
  } catch (const std::bad_alloc&) {
    return report(hyperverify::fail(HV_IO, "out of memory"), err, err_len);
  } catch (const std::exception& e) {
    return report(hyperverify::fail(HV_PROGRAM, e.what()), err, err_len);
  }
}

int hv_lockout_attach(hv_handle* handle, const char* state_path) {
  if (handle == nullptr || state_path == nullptr || state_path[0] == '\0') return HV_BAD_INPUT;
  try {
    handle->lockout_path = state_path;
  } catch (const std::exception&) {
    return HV_IO;
  }
  return HV_OK;
}

int hv_lockout_status(hv_handle* handle, double* locked_for, int* pin_required) {
  if (handle == nullptr || handle->lockout_path.empty()) return HV_BAD_INPUT;
  try {
    auto state = hyperverify::read_lockout(handle->lockout_path);
    if (locked_for != nullptr) *locked_for = hyperverify::lock_remaining(state, hyperverify::unix_now());
    if (pin_required != nullptr) *pin_required = state.pin_required ? 1 : 0;
    return HV_OK;
  } catch (const std::exception&) {
    return HV_IO;
  }
}

int hv_lockout_pin_verified(hv_handle* handle) {
  if (handle == nullptr || handle->lockout_path.empty()) return HV_BAD_INPUT;
  try {
    auto written = hyperverify::write_lockout(handle->lockout_path, hyperverify::LockoutState{});
    return written.ok() ? HV_OK : HV_IO;
  } catch (const std::exception&) {
    return HV_IO;
  }
}

int hv_preprocess_crop(const uint8_t* rgb, int height, int width, int channels, float* input_chw) {
  auto status = hyperverify::preprocess_crop(rgb, height, width, channels, input_chw);
  return status.ok() ? HV_OK : status.error().code;
}

int hv_score_input(hv_handle* handle, const float* input_chw, float* logit, int* accepted) {
  if (accepted != nullptr) *accepted = 0;
  if (handle == nullptr || input_chw == nullptr) return HV_BAD_INPUT;
  try {
    int allowed = before_attempt(handle);
    if (allowed != HV_OK) return allowed;
    std::memcpy(handle->runner->input(), input_chw, HV_INPUT_VALUES * sizeof(float));
    hv_decision decision;
    int status = finish(handle, handle->runner->forward(), nullptr, &decision);
    if (status == HV_OK && logit != nullptr) *logit = decision.logit;
    if (status == HV_OK && accepted != nullptr) *accepted = decision.accepted;
    return status;
  } catch (const std::exception&) {
    return HV_PROGRAM;
  }
}

int hv_verify_crop(hv_handle* handle, const uint8_t* rgb, int height, int width, int channels, hv_decision* out) {
  if (out == nullptr) return HV_BAD_INPUT;
  try {
    return verify_crop(handle, rgb, height, width, channels, out);
  } catch (const std::exception&) {
    *out = hv_decision{};
    return HV_PROGRAM;
  }
}

int hv_score_crop(hv_handle* handle, const uint8_t* rgb, int height, int width, int channels,
                  float* logit, int* accepted) {
  hv_decision decision;
  int status = hv_verify_crop(handle, rgb, height, width, channels, &decision);
  if (accepted != nullptr) *accepted = status == HV_OK ? decision.accepted : 0;
  if (status == HV_OK && logit != nullptr) *logit = decision.logit;
  return status;
}

int hv_verify_frame(hv_handle* handle, const uint8_t* pixels, int height, int width, size_t row_bytes, int layout,
                    hv_frame_decision* out) {
  if (out == nullptr) return HV_BAD_INPUT;
  *out = hv_frame_decision{};
  out->reason = HV_REASON_REJECTED;
  try {
    return verify_frame(handle, pixels, height, width, row_bytes, layout, out);
  } catch (const std::bad_alloc&) {
    return HV_BAD_INPUT;
  } catch (const std::exception&) {
    return HV_PROGRAM;
  }
}

const char* hv_reason_string(int reason) {
  switch (reason) {
    case HV_REASON_ACCEPTED: return "accepted";
    case HV_REASON_REJECTED: return "rejected";
    case HV_REASON_NO_FACE: return "no_face";
    case HV_REASON_SEVERAL_FACES: return "several_faces";
    case HV_REASON_FACE_TOO_SMALL: return "face_too_small";
    case HV_REASON_LOW_QUALITY: return "low_quality";
    default: return "unknown";
  }
}

int hv_set_frames_required(hv_handle* handle, int frames_required, int window) {
  if (handle == nullptr || frames_required < 1 || window < frames_required) return HV_BAD_INPUT;
  handle->frames_required = frames_required;
  handle->window = window;
  handle->window_frames = handle->window_accepts = 0;
  return HV_OK;
}

int hv_mode(const hv_handle* handle) { return handle == nullptr ? -1 : handle->backbone ? 1 : 0; }

int hv_enroll(const char* bundle_dir, const hv_trust* trust, const uint8_t* crops, int count, const char* user_id,
              const char* out_path, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) err[0] = '\0';
  if (trust == nullptr) return report(hyperverify::fail(HV_BAD_INPUT, "hv_enroll needs a policy"), err, err_len);
  try {
    auto done = enroll_impl(bundle_dir, *trust, crops, count, user_id, out_path);
    return done.ok() ? HV_OK : report(done.error(), err, err_len);
  } catch (const std::bad_alloc&) {
    return report(hyperverify::fail(HV_IO, "out of memory"), err, err_len);
  } catch (const std::exception& e) {
    return report(hyperverify::fail(HV_PROGRAM, e.what()), err, err_len);
  }
}

float hv_threshold(const hv_handle* handle) { return handle == nullptr ? std::nanf("") : handle->threshold; }

void hv_close(hv_handle* handle) { delete handle; }

}  // extern "C"
