// Pictures of a run as SVG (any browser or image viewer opens them): a spike raster and
// voltage traces.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include <brain/export.h>

namespace brain::io {

struct RasterGroup {
  std::string label;
  at::Tensor spikes;  // [T, n], bool or 0/1
  std::string color;  // any SVG colour
};

// Populations stacked bottom-up; time on x from t0_ms in steps of dt_ms.
BRAIN_API std::string raster_svg(const std::vector<RasterGroup>& groups, double t0_ms, double dt_ms,
                                 const std::string& title);

// values [T, k]: k traces against times [T] (ms).
BRAIN_API std::string traces_svg(const at::Tensor& times_ms, const at::Tensor& values,
                                 const std::vector<std::string>& labels, const std::string& title,
                                 const std::string& y_label);

BRAIN_API void write_text(const std::string& path, const std::string& text);

}  // namespace brain::io
