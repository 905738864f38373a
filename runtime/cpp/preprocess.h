// Crop -> f's input: the C++ twin of spec.reduce_crop + spec.to_input.
#pragma once

#include <cstdint>

#include "status.h"

namespace hyperverify {

// Downscale an interleaved uint8 image (src_h x src_w x channels) to
// dst_h x dst_w with area interpolation, reproducing OpenCV's
// cv::resize(INTER_AREA) for non-integer ratios (resizeArea_: per-axis tables
// of (source index, float weight), row sums in float, round half to even).
// Requires 1 <= dst <= src on both axes.
void resize_area(const uint8_t* src, int src_h, int src_w, int channels, uint8_t* dst, int dst_h,
                 int dst_w);

// A 112x112x3 aligned crop (resized) or a 64x64x3 one (as is) -> 3x64x64 CHW
// floats, (p - 127.5) * (1 / 127.5) in float32 as numpy computes it.
Status preprocess_crop(const uint8_t* rgb, int height, int width, int channels, float* input_chw);

}  // namespace hyperverify
