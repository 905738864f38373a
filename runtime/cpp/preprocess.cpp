// See preprocess.h. The resize follows OpenCV's resize.cpp (computeResizeAreaTab
// and ResizeArea_Invoker), written from its description: weights computed in
// double and stored as float, horizontal pass per source row into a float
// buffer, vertical accumulation in float, saturate_cast<uchar> = round half to
// even. Compiled with -ffp-contract=off so no FMA changes the float sums.
#include "preprocess.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace hyperverify {
namespace {

struct Tap {
  int dst;     // destination index (times channels for x)
  int src;     // source index (times channels for x)
  float alpha;
};

std::vector<Tap> area_taps(int src_size, int dst_size, int channels, double scale) {
  std::vector<Tap> taps;
  for (int d = 0; d < dst_size; d++) {
    double f1 = d * scale;
    double f2 = f1 + scale;
    double cell = std::min(scale, src_size - f1);
    int s1 = static_cast<int>(std::ceil(f1));
    int s2 = static_cast<int>(std::floor(f2));
    s2 = std::min(s2, src_size - 1);
    s1 = std::min(s1, s2);
    if (s1 - f1 > 1e-3)
      taps.push_back({d * channels, (s1 - 1) * channels, static_cast<float>((s1 - f1) / cell)});
    for (int s = s1; s < s2; s++)
      taps.push_back({d * channels, s * channels, static_cast<float>(1.0 / cell)});
    if (f2 - s2 > 1e-3)
      taps.push_back({d * channels, s2 * channels,
                      static_cast<float>(std::min(std::min(f2 - s2, 1.0), cell) / cell)});
  }
  return taps;
}

uint8_t saturate_u8(float value) {
  long rounded = std::lrint(value);  // default rounding mode: half to even, as cvRound
  return static_cast<uint8_t>(std::clamp(rounded, 0L, 255L));
}

// The tables of one resize, laid out for the loops below: every destination
// column gets the same number of taps (the widest), padded with weight 0,
// which adds an exact +0 to a non-negative sum and so changes nothing.
struct AreaPlan {
  int src_h, src_w, channels, dst_h, dst_w, taps;
  std::vector<int> x_offset;     // [tap][dst column * channels + c] -> source element in a row
  std::vector<float> x_alpha;    // same layout
  std::vector<Tap> ytab;         // OpenCV's row table, grouped by destination row
  std::vector<size_t> y_first;   // dst_h + 1 group starts in ytab

  AreaPlan(int sh, int sw, int cn, int dh, int dw)
      : src_h(sh), src_w(sw), channels(cn), dst_h(dh), dst_w(dw), taps(0) {
    // cv::resize: inv_scale = dsize / ssize, scale = 1 / inv_scale (both double).
    const double scale_x = 1.0 / (static_cast<double>(dw) / sw);
    const double scale_y = 1.0 / (static_cast<double>(dh) / sh);
    std::vector<Tap> xtab = area_taps(sw, dw, 1, scale_x);
    std::vector<int> count(dw, 0);
    for (const Tap& t : xtab) taps = std::max(taps, ++count[t.dst]);
    const int width = dw * cn;
    x_offset.assign(static_cast<size_t>(taps) * width, 0);
    x_alpha.assign(static_cast<size_t>(taps) * width, 0.0f);
    std::fill(count.begin(), count.end(), 0);
    for (const Tap& t : xtab) {
      int k = count[t.dst]++;
      for (int c = 0; c < cn; c++) {
        x_offset[static_cast<size_t>(k) * width + t.dst * cn + c] = t.src * cn + c;
        x_alpha[static_cast<size_t>(k) * width + t.dst * cn + c] = t.alpha;
      }
    }
    for (int d = 0; d < dw; d++)  // padding taps read a valid element with weight 0
      for (int k = count[d]; k < taps; k++)
        for (int c = 0; c < cn; c++)
          x_offset[static_cast<size_t>(k) * width + d * cn + c] = c;
    ytab = area_taps(sh, dh, 1, scale_y);
    y_first.assign(dh + 1, ytab.size());
    for (size_t k = ytab.size(); k-- > 0;) y_first[ytab[k].dst] = k;
  }

  void run(const uint8_t* src, uint8_t* dst) const {
    const int width = dst_w * channels;
    const int row_size = src_w * channels;
    // Horizontal pass, once per source row (OpenCV redoes it for each of the
    // up to two destination rows a source row feeds: the same float sums).
    // Each output is ((0 + s0*a0) + s1*a1) + ... in table order, as OpenCV
    // accumulates it.
    std::vector<float> rows(static_cast<size_t>(src_h) * width);
    std::vector<float> pixels(row_size);
    for (int sy = 0; sy < src_h; sy++) {
      const uint8_t* row = src + static_cast<size_t>(sy) * row_size;
      for (int i = 0; i < row_size; i++) pixels[i] = row[i];
      float* buf = rows.data() + static_cast<size_t>(sy) * width;
      for (int i = 0; i < width; i++) buf[i] = 0.0f;
      for (int k = 0; k < taps; k++) {
        const int* offset = x_offset.data() + static_cast<size_t>(k) * width;
        const float* alpha = x_alpha.data() + static_cast<size_t>(k) * width;
        for (int i = 0; i < width; i++) buf[i] += pixels[offset[i]] * alpha[i];
      }
    }
    // Vertical pass: each destination row is (b0*r0 + b1*r1) + ... over its
    // source rows in table order (OpenCV: sum = beta*buf, then sum +=
    // beta*buf), then rounded half to even (saturate_cast<uchar>).
    std::vector<float> sum(width);
    for (int dy = 0; dy < dst_h; dy++) {
      for (int i = 0; i < width; i++) sum[i] = 0.0f;
      for (size_t k = y_first[dy]; k < y_first[dy + 1]; k++) {
        const float* buf = rows.data() + static_cast<size_t>(ytab[k].src) * width;
        const float beta = ytab[k].alpha;
        for (int i = 0; i < width; i++) sum[i] += beta * buf[i];
      }
      uint8_t* out = dst + static_cast<size_t>(dy) * width;
      for (int i = 0; i < width; i++) out[i] = saturate_u8(sum[i]);
    }
  }
};

}  // namespace

void resize_area(const uint8_t* src, int src_h, int src_w, int channels, uint8_t* dst, int dst_h,
                 int dst_w) {
  if (src_h == HV_CROP_SIZE && src_w == HV_CROP_SIZE && channels == 3 && dst_h == HV_INPUT_SIZE &&
      dst_w == HV_INPUT_SIZE) {
    static const AreaPlan crop_plan(HV_CROP_SIZE, HV_CROP_SIZE, 3, HV_INPUT_SIZE, HV_INPUT_SIZE);
    crop_plan.run(src, dst);
    return;
  }
  AreaPlan(src_h, src_w, channels, dst_h, dst_w).run(src, dst);
}

Status preprocess_crop(const uint8_t* rgb, int height, int width, int channels, float* input_chw) {
  if (rgb == nullptr || input_chw == nullptr) return fail(HV_BAD_INPUT, "NULL crop or output");
  bool full = height == HV_CROP_SIZE && width == HV_CROP_SIZE && channels == 3;
  bool reduced = height == HV_INPUT_SIZE && width == HV_INPUT_SIZE && channels == 3;
  if (!full && !reduced)
    return fail(HV_BAD_INPUT, "expected a 112x112x3 (or 64x64x3) RGB crop, got " +
                                  std::to_string(height) + "x" + std::to_string(width) + "x" +
                                  std::to_string(channels));
  uint8_t small[HV_INPUT_SIZE * HV_INPUT_SIZE * 3];
  const uint8_t* pixels = rgb;
  if (full) {
    resize_area(rgb, HV_CROP_SIZE, HV_CROP_SIZE, 3, small, HV_INPUT_SIZE, HV_INPUT_SIZE);
    pixels = small;
  }
  // spec.to_input: (float32(p) - 127.5) * float32(1 / 127.5), then HWC -> CHW.
  const float mean = 127.5f;
  const float scale = static_cast<float>(1.0 / 127.5);
  constexpr int plane = HV_INPUT_SIZE * HV_INPUT_SIZE;
  for (int i = 0; i < plane; i++)
    for (int c = 0; c < 3; c++)
      input_chw[c * plane + i] = (static_cast<float>(pixels[i * 3 + c]) - mean) * scale;
  return Ok{};
}

}  // namespace hyperverify
