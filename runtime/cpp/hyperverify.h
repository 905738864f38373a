/*
 * hyperverify C runtime: one user's face verifier on a device.
 *
 * A plain C interface (no C++ types cross it), so Swift imports it through a
 * module map / bridging header and Kotlin through a thin JNI shim.
 *
 *   static const uint8_t BACKEND_KEY[32] = {...};   // the app's trust anchor, in its code
 *   hv_handle* h = NULL;
 *   char err[256];
 *   int s = hv_open("bundle", "alice.hvu", BACKEND_KEY, 0, &h, err, sizeof err);
 *   if (s != HV_OK) { report(hv_status_string(s), err); }
 *   s = hv_lockout_attach(h, "<app state>/alice.lockout.json");
 *   float logit; int accepted;
 *   s = hv_score_crop(h, rgb, 112, 112, 3, &logit, &accepted);  // HV_LOCKED_OUT / HV_PIN_REQUIRED
 *   hv_close(h);
 *
 * The cascade (runtime/cascade.py) runs by default when the bundle ships it
 * (the enrollment program and the manifest's bands) and the user file keeps
 * the enrollment embedding (format 2): a crop whose logit f is unsure of goes
 * to the backbone (hv_verify_crop tells which). HV_F_ONLY opts out; hv_mode
 * says which runs.
 *
 * Trust (runtime/trust.py): the app, not the bundle, fixes the public key and
 * the signature policy. With a key, the manifest's detached signature
 * (manifest.json.sig) is checked before the manifest is read, and the user
 * file must be signed by the same key. Without a key hv_open fails unless the
 * caller opts out by the named flag HV_ALLOW_UNSIGNED. The threshold applied
 * is max(user file's, manifest's calibrated one); a non-finite logit never
 * accepts.
 *
 * Inputs and meaning (the contract lives in runtime/spec.py):
 *   - the crop is the ALIGNED face (runtime/faces.py: YuNet landmarks, similarity
 *     warp to the 112x112 ArcFace template), RGB, uint8, rows of width*3 bytes;
 *   - it is reduced to 64x64 by area interpolation with the same weights and
 *     rounding as OpenCV's cv::resize(INTER_AREA) (what spec.reduce_crop does),
 *     then normalised to (p - 127.5) / 127.5, channels first;
 *   - a 64x64x3 crop is taken as already reduced (no resize);
 *   - the logit is f(x; theta_user); accepted = the logit is finite and
 *     >= hv_threshold() (the user's threshold, floored by the manifest's).
 *
 * Status codes: the reason tags of runtime/user_file.py (UserFileError.reason)
 * plus io, bad_input, program, model_version, bundle, locked_out and
 * pin_required; hv_status_string() returns the tag.
 *
 * Threads: a handle is not thread-safe; use one per thread (or lock). The
 * network runs on the calling thread (no thread pool): for a 3 MFLOP model a
 * pool costs more than it saves.
 */
#ifndef HYPERVERIFY_H
#define HYPERVERIFY_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define HV_API __declspec(dllexport)
#else
#define HV_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum hv_status {
  HV_OK = 0,
  HV_BAD_MAGIC = 1,    /* not a user weights file */
  HV_VERSION = 2,      /* user file format version this runtime cannot read */
  HV_TRUNCATED = 3,    /* the user file is shorter than its header promises */
  HV_LENGTH = 4,       /* theta count out of range, or bytes after the end */
  HV_CHECKSUM = 5,     /* SHA-256 mismatch: the user file is corrupted */
  HV_SIGNATURE = 6,    /* bad Ed25519 signature, or unsigned when one is required */
  HV_LAYOUT = 7,       /* weights made for another verifier layout than the program's */
  HV_VALUES = 8,       /* NaN or infinite threshold or theta */
  HV_DTYPE = 9,        /* unknown theta dtype code */
  HV_INVALID = 10,     /* any other malformed field (unknown flags, bad text) */
  HV_IO = 11,          /* a file cannot be read */
  HV_BAD_INPUT = 12,   /* a bad argument: NULL pointer, wrong crop shape */
  HV_PROGRAM = 13,     /* the .pte cannot be loaded or run, or is not a verifier */
  HV_MODEL_VERSION = 14, /* weights enrolled with another model than the program's */
  HV_BUNDLE = 15,      /* malformed manifest, path outside the bundle, program checksum differs */
  HV_LOCKED_OUT = 16,  /* too many rejected attempts: wait (hv_lockout_status) */
  HV_PIN_REQUIRED = 17 /* the hard limit was reached, or the state file is unreadable: PIN only */
} hv_status;

/* hv_open flags */
#define HV_ALLOW_UNSIGNED 1u /* opt-out: no key; unsigned manifest and user files accepted */
#define HV_F_ONLY 2u         /* judge with f alone even where the cascade could run */

#define HV_CROP_SIZE 112    /* side of the aligned crop */
#define HV_INPUT_SIZE 64    /* side of f's input */
#define HV_INPUT_VALUES (3 * HV_INPUT_SIZE * HV_INPUT_SIZE)

typedef struct hv_handle hv_handle;

/*
 * Open an SDK bundle folder (from build-sdk) and one user's weights file, in
 * the order of runtime/verifier.py load(): the manifest (signature, then its
 * fields), the program it names (confined to the bundle, sha256 as listed),
 * the program's constant methods against the manifest, then the user file as
 * runtime/user_file.py decode() checks it, its model version and size.
 *
 * public_key32: the backend's Ed25519 public key (32 raw bytes), fixed in the
 * app's code. NULL fails with HV_SIGNATURE unless flags has HV_ALLOW_UNSIGNED
 * (a key together with that flag is HV_BAD_INPUT).
 * On failure *out is NULL and err (if not NULL) holds a NUL-terminated message.
 */
HV_API int hv_open(const char* bundle_dir, const char* user_path,
                   const uint8_t* public_key32, unsigned flags,
                   hv_handle** out, char* err, size_t err_len);

/* Which user files a device accepts (runtime/trust.py TrustPolicy.user_files). */
#define HV_USER_FILES_BACKEND 0 /* signed by the backend's key */
#define HV_USER_FILES_DEVICE 1  /* made on this device (hv_enroll), HMAC'd with its key */
#define HV_USER_FILES_EITHER 2

/* The app's trust policy: fixed in its code and its key store, never read from the bundle. */
typedef struct hv_trust {
  const uint8_t* public_key32; /* the backend's Ed25519 key: signs the manifest (and backend-made files) */
  const uint8_t* device_key;   /* the device's secret HMAC key, >= 32 bytes (Keystore / Keychain), or NULL */
  size_t device_key_len;
  int user_files;              /* HV_USER_FILES_*; DEVICE and EITHER need device_key and public_key32 */
} hv_trust;

/*
 * hv_open under a policy that may accept device-made user files (hv_open is
 * this with HV_USER_FILES_BACKEND and no device key). A device-made file
 * holds the backend's refined head (hv_enroll runs the bundle's refinement
 * program), so it is floored by the manifest's threshold as a backend-made one
 * is; it needs a bundle that ships on-device enrollment, and its cascade uses
 * the device band. A policy
 * that contradicts itself (a device key with HV_USER_FILES_BACKEND, a device
 * policy without a key of 32 bytes or more, or with HV_ALLOW_UNSIGNED) is
 * HV_BAD_INPUT.
 */
HV_API int hv_open_trusted(const char* bundle_dir, const char* user_path, const hv_trust* trust,
                           unsigned flags, hv_handle** out, char* err, size_t err_len);

/*
 * On-device enrollment (runtime/enroll.py Enroller.enroll_crops): run the
 * bundle's enrollment program on `count` aligned 112x112x3 uint8 RGB crops of
 * one person (back to back, 1 <= count <= the manifest's max_crops) for the
 * generated head, refine it with the bundle's refinement program (the
 * backend's refinement, on f's inputs of the same crops: its start method,
 * then its step method as many times as its constant method iterations says;
 * runner.h Refiner) and write the user file `out_path` atomically: format 2,
 * float16, the refined head, the manifest's threshold for a user enrolled
 * from `count` photos (the backend's), HMAC'd with trust->device_key (the face
 * never leaves the device). The manifest must be signed by
 * trust->public_key32. user_id: UTF-8, at most 32 bytes.
 */
HV_API int hv_enroll(const char* bundle_dir, const hv_trust* trust, const uint8_t* crops, int count,
                     const char* user_id, const char* out_path, char* err, size_t err_len);

/*
 * Persist this user's lockout in a state file (see lockout.h for the format
 * shared with the Python runtime and the policy: 30 s after 5 rejects, doubling
 * up to 1 h, PIN only after 20). From then on hv_score_crop and hv_score_input
 * check it before touching the crop (HV_LOCKED_OUT, HV_PIN_REQUIRED), and
 * record every attempt in it (every decision; with hv_set_frames_required,
 * every window, see there); an attempt that cannot be recorded is HV_IO and
 * never accepted. A missing file is a fresh state; an unreadable one means
 * HV_PIN_REQUIRED.
 */
HV_API int hv_lockout_attach(hv_handle* handle, const char* state_path);

/* Seconds of lockout left (0 when none) and whether only the PIN unlocks. */
HV_API int hv_lockout_status(hv_handle* handle, double* locked_for, int* pin_required);

/* The app checked its PIN: clear the counts, the lock and pin_required. */
HV_API int hv_lockout_pin_verified(hv_handle* handle);

/*
 * k of n frames (the Python runtime's load(..., frames_required, window)):
 * accept once `frames_required` of the last `window` judged crops or frames
 * were the owner's. A judged frame that does not complete the k accepts
 * returns accepted = 0 (reason rejected for a frame). A window is one attempt
 * for the lockout: recorded as rejected when its first frame is judged (so a
 * restart that drops an open window cannot drop its attempt), and cleared by
 * the accept that completes it; a full window without k accepts, or an
 * accept, starts a new window. Default 1 of 1 (every frame decides).
 * HV_BAD_INPUT unless 1 <= frames_required <= window; setting it starts a new
 * window.
 */
HV_API int hv_set_frames_required(hv_handle* handle, int frames_required, int window);

/*
 * Score one aligned RGB crop: height x width x channels uint8, row-major,
 * 112x112x3 (resized) or 64x64x3 (used as is). Anything else is HV_BAD_INPUT.
 * logit and accepted may each be NULL.
 */
HV_API int hv_score_crop(hv_handle* handle, const uint8_t* rgb, int height,
                         int width, int channels, float* logit, int* accepted);

/* One crop's decision. */
typedef struct hv_decision {
  float logit;           /* f's logit */
  int accepted;          /* 1: the owner */
  int escalated;         /* 1: f was unsure and the backbone judged (cascade only) */
  float backbone_score;  /* the backbone's cosine to the enrollment embedding; NaN if not escalated */
} hv_decision;

/*
 * As hv_score_crop, with the whole decision. In the cascade a logit inside
 * the band is escalated when the crop is 112x112x3 (the backbone's input); a
 * 64x64x3 crop cannot be, and such a logit is rejected.
 */
HV_API int hv_verify_crop(hv_handle* handle, const uint8_t* rgb, int height, int width, int channels,
                          hv_decision* out);

/* Pixel layouts of a camera frame: 8 bits per channel, interleaved. */
#define HV_FRAME_BGR 0  /* OpenCV's order */
#define HV_FRAME_RGB 1
#define HV_FRAME_BGRA 2 /* iOS kCVPixelFormatType_32BGRA */
#define HV_FRAME_RGBA 3 /* Android Bitmap ARGB_8888 (bytes R, G, B, A) */
#define HV_MAX_FRAME_SIDE 8192

/* What hv_verify_frame decided: the reasons of runtime/verifier.py Result.reason. */
typedef enum hv_reason {
  HV_REASON_ACCEPTED = 0,
  HV_REASON_REJECTED = 1,
  HV_REASON_NO_FACE = 2,
  HV_REASON_SEVERAL_FACES = 3,   /* two faces of similar size: who holds the phone is unclear */
  HV_REASON_FACE_TOO_SMALL = 4,  /* the box's shorter side is under 48 px */
  HV_REASON_LOW_QUALITY = 5      /* detector score under 0.75, or a blurred crop */
} hv_reason;

typedef struct hv_frame_decision {
  int reason;             /* hv_reason */
  hv_decision decision;   /* the face's decision; all zero (not accepted) unless reason is accepted/rejected */
  float box[4];           /* the chosen face: x, y, width, height in frame pixels (zeros for no_face) */
  float landmarks[10];    /* its five landmarks, (x, y) each, in frame pixels */
  float detector_score;
} hv_frame_decision;

/*
 * Decide on one camera frame, as runtime/verifier.py Verifier.verify does:
 * YuNet (the bundle's detector program) finds the faces; the largest is taken
 * (two of similar size: several_faces); a face under 48 px, a detector score
 * under 0.75 or a blurred crop is gated before f sees it; the face is aligned
 * to the 112x112 template and judged like hv_verify_crop (cascade included).
 * Only accepted and rejected frames count as attempts for the lockout.
 * pixels: height x width, rows of row_bytes bytes (>= width x channels), in
 * `layout` (HV_FRAME_*); sides up to HV_MAX_FRAME_SIDE. A bundle without the
 * detector program is HV_BUNDLE.
 */
HV_API int hv_verify_frame(hv_handle* handle, const uint8_t* pixels, int height, int width, size_t row_bytes,
                           int layout, hv_frame_decision* out);

/* The tag of a reason ("accepted", "no_face", ...), "unknown" otherwise. */
HV_API const char* hv_reason_string(int reason);

/* 1 when the cascade runs, 0 for f alone, -1 for NULL. */
HV_API int hv_mode(const hv_handle* handle);

/* The preprocessing alone: crop as for hv_score_crop -> HV_INPUT_VALUES floats (CHW). */
HV_API int hv_preprocess_crop(const uint8_t* rgb, int height, int width,
                              int channels, float* input_chw);

/* The network alone, on an already preprocessed 1x3x64x64 CHW input (in the
 * cascade a logit inside the band is rejected: the backbone needs the crop);
 * decided and recorded as hv_score_crop (the lockout, k of n). */
HV_API int hv_score_input(hv_handle* handle, const float* input_chw,
                          float* logit, int* accepted);

/* The threshold applied: max(user's, manifest's calibrated) (NaN for NULL). */
HV_API float hv_threshold(const hv_handle* handle);

/* Release everything; NULL is allowed. */
HV_API void hv_close(hv_handle* handle);

/* The reason tag of a status ("ok", "bad_magic", ...), "unknown" otherwise. */
HV_API const char* hv_status_string(int status);

#ifdef __cplusplus
}
#endif

#endif /* HYPERVERIFY_H */
