#include <brain/models/connectivity.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace brain::connect {

namespace {

CsrMatrix from_rows(const std::vector<std::vector<int64_t>>& rows, int64_t n_cols, c10::Device device,
                    at::ScalarType index_dtype) {
  const int64_t n_rows = static_cast<int64_t>(rows.size());
  std::vector<int64_t> indptr(n_rows + 1, 0);
  for (int64_t i = 0; i < n_rows; ++i) indptr[i + 1] = indptr[i] + static_cast<int64_t>(rows[i].size());
  std::vector<int64_t> indices;
  indices.reserve(indptr.back());
  for (const auto& r : rows) indices.insert(indices.end(), r.begin(), r.end());
  CsrMatrix m;
  m.indptr = torch::tensor(indptr, torch::kLong).to(device, index_dtype);
  m.indices = (indices.empty() ? torch::zeros({0}, torch::kLong) : torch::tensor(indices, torch::kLong)).to(device, index_dtype);
  m.n_rows = n_rows;
  m.n_cols = n_cols;
  return m;
}

// k distinct values from [0, n) minus `skip` (or none when skip < 0), sorted: Floyd's algorithm.
std::vector<int64_t> sample_distinct(int64_t n, int64_t k, int64_t skip, std::mt19937_64& rng) {
  const int64_t pool = skip >= 0 ? n - 1 : n;
  std::unordered_set<int64_t> chosen;
  chosen.reserve(static_cast<size_t>(k) * 2);
  for (int64_t j = pool - k; j < pool; ++j) {
    std::uniform_int_distribution<int64_t> dist(0, j);
    const int64_t t = dist(rng);
    chosen.insert(chosen.count(t) ? j : t);
  }
  std::vector<int64_t> out;
  out.reserve(chosen.size());
  for (int64_t v : chosen) out.push_back(skip >= 0 && v >= skip ? v + 1 : v);  // skip the diagonal
  std::sort(out.begin(), out.end());
  return out;
}

void check_sizes(const char* what, int64_t a, int64_t b) {
  TORCH_CHECK(a >= 0 && b >= 0, "connect::", what, ": sizes must be >= 0, got ", a, " and ", b);
}

}  // namespace

CsrMatrix one_to_one(int64_t n, c10::Device device, at::ScalarType index_dtype) {
  check_sizes("one_to_one", n, n);
  CsrMatrix m;
  m.indptr = torch::arange(n + 1, torch::kLong).to(device, index_dtype);
  m.indices = torch::arange(n, torch::kLong).to(device, index_dtype);
  m.n_rows = m.n_cols = n;
  return m;
}

CsrMatrix all_to_all(int64_t n_pre, int64_t n_post, bool include_self, c10::Device device, at::ScalarType index_dtype) {
  check_sizes("all_to_all", n_pre, n_post);
  TORCH_CHECK(include_self || n_pre == n_post, "connect::all_to_all: excluding self-connections needs n_pre == n_post");
  at::Tensor mask = torch::ones({n_pre, n_post}, torch::kBool);
  if (!include_self) mask.fill_diagonal_(false);
  const auto nz = mask.nonzero();
  CsrMatrix m;
  at::Tensor indptr = torch::zeros({n_pre + 1}, torch::kLong);
  indptr.narrow(0, 1, n_pre).copy_(mask.sum(1).cumsum(0));
  m.indptr = indptr.to(device, index_dtype);
  m.indices = nz.select(1, 1).contiguous().to(device, index_dtype);
  m.n_rows = n_pre;
  m.n_cols = n_post;
  return m;
}

CsrMatrix fixed_post_num(int64_t n_pre, int64_t n_post, int64_t k, bool include_self, uint64_t seed, c10::Device device,
                         at::ScalarType index_dtype) {
  check_sizes("fixed_post_num", n_pre, n_post);
  TORCH_CHECK(include_self || n_pre == n_post, "connect::fixed_post_num: excluding self-connections needs n_pre == n_post");
  const int64_t available = include_self ? n_post : n_post - 1;
  TORCH_CHECK(k >= 0 && k <= available, "connect::fixed_post_num: k must lie in [0, ", available, "], got ", k);
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> rows(n_pre);
  for (int64_t i = 0; i < n_pre; ++i) rows[i] = sample_distinct(n_post, k, include_self ? -1 : i, rng);
  return from_rows(rows, n_post, device, index_dtype);
}

CsrMatrix fixed_pre_num(int64_t n_pre, int64_t n_post, int64_t k, bool include_self, uint64_t seed, c10::Device device,
                        at::ScalarType index_dtype) {
  // Draw the transpose (post x pre with fixed out-degree), then read it column-wise.
  const CsrMatrix t = fixed_post_num(n_post, n_pre, k, include_self, seed, c10::kCPU, at::kLong);
  std::vector<std::vector<int64_t>> rows(n_pre);
  const auto ip = t.indptr.accessor<int64_t, 1>();
  const auto ix = t.indices.accessor<int64_t, 1>();
  for (int64_t post = 0; post < n_post; ++post) {
    for (int64_t e = ip[post]; e < ip[post + 1]; ++e) rows[ix[e]].push_back(post);  // posts ascending
  }
  return from_rows(rows, n_post, device, index_dtype);
}

CsrMatrix gaussian_prob(int64_t height, int64_t width, double sigma, double p_max, bool periodic, bool include_self,
                        uint64_t seed, c10::Device device, at::ScalarType index_dtype) {
  check_sizes("gaussian_prob", height, width);
  TORCH_CHECK(sigma > 0, "connect::gaussian_prob: sigma must be positive, got ", sigma);
  TORCH_CHECK(p_max >= 0 && p_max <= 1, "connect::gaussian_prob: p_max must lie in [0, 1], got ", p_max);
  const int64_t n = height * width;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor idx = torch::arange(n, torch::kLong);
  const at::Tensor y = idx.div(width, "floor").to(torch::kDouble), x = idx.remainder(width).to(torch::kDouble);
  std::vector<at::Tensor> rows, cols;
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(n, 1));
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t r1 = std::min(n, r0 + block);
    at::Tensor dy = (y.narrow(0, r0, r1 - r0).unsqueeze(1) - y.unsqueeze(0)).abs();
    at::Tensor dx = (x.narrow(0, r0, r1 - r0).unsqueeze(1) - x.unsqueeze(0)).abs();
    if (periodic) {
      dy = torch::minimum(dy, height - dy);
      dx = torch::minimum(dx, width - dx);
    }
    const at::Tensor prob = p_max * torch::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
    at::Tensor mask = at::rand({r1 - r0, n}, gen, torch::kDouble) < prob;
    if (!include_self) mask.diagonal(r0, 0, 1).fill_(false);
    const auto nz = mask.nonzero();
    rows.push_back(nz.select(1, 0) + r0);
    cols.push_back(nz.select(1, 1));
  }
  std::vector<std::vector<int64_t>> out(n);
  for (size_t b = 0; b < rows.size(); ++b) {
    const auto r = rows[b].accessor<int64_t, 1>();
    const auto c = cols[b].accessor<int64_t, 1>();
    for (int64_t e = 0; e < rows[b].size(0); ++e) out[r[e]].push_back(c[e]);
  }
  return from_rows(out, n, device, index_dtype);
}

CsrMatrix grid(int64_t height, int64_t width, int64_t radius, bool manhattan, bool periodic, bool include_self,
               c10::Device device, at::ScalarType index_dtype) {
  check_sizes("grid", height, width);
  TORCH_CHECK(radius >= 0, "connect::grid: radius must be >= 0, got ", radius);
  std::vector<std::vector<int64_t>> rows(height * width);
  for (int64_t yi = 0; yi < height; ++yi) {
    for (int64_t xi = 0; xi < width; ++xi) {
      auto& row = rows[yi * width + xi];
      for (int64_t dy = -radius; dy <= radius; ++dy) {
        for (int64_t dx = -radius; dx <= radius; ++dx) {
          if (manhattan && std::abs(dx) + std::abs(dy) > radius) continue;
          if (dx == 0 && dy == 0 && !include_self) continue;
          int64_t yj = yi + dy, xj = xi + dx;
          if (periodic) {
            yj = ((yj % height) + height) % height;
            xj = ((xj % width) + width) % width;
          } else if (yj < 0 || yj >= height || xj < 0 || xj >= width) {
            continue;
          }
          row.push_back(yj * width + xj);
        }
      }
      std::sort(row.begin(), row.end());
      row.erase(std::unique(row.begin(), row.end()), row.end());  // small periodic grids wrap onto themselves
    }
  }
  return from_rows(rows, height * width, device, index_dtype);
}

CsrMatrix small_world(int64_t n, int64_t k, double p, uint64_t seed, c10::Device device, at::ScalarType index_dtype) {
  TORCH_CHECK(n >= 0, "connect::small_world: n must be >= 0, got ", n);
  TORCH_CHECK(k >= 0 && 2 * k < n, "connect::small_world: need 0 <= k and 2k < n, got k = ", k, ", n = ", n);
  TORCH_CHECK(p >= 0 && p <= 1, "connect::small_world: p must lie in [0, 1], got ", p);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  std::vector<std::vector<int64_t>> rows(n);
  for (int64_t i = 0; i < n; ++i) {
    std::unordered_set<int64_t> targets;
    for (int64_t j = 1; j <= k; ++j) {
      targets.insert((i + j) % n);
      targets.insert(((i - j) % n + n) % n);
    }
    std::vector<int64_t> lattice(targets.begin(), targets.end());
    std::sort(lattice.begin(), lattice.end());
    for (int64_t t : lattice) {
      if (coin(rng) >= p) continue;
      int64_t u;
      do {
        u = pick(rng);
      } while (u == i || targets.count(u));
      targets.erase(t);
      targets.insert(u);
    }
    rows[i].assign(targets.begin(), targets.end());
    std::sort(rows[i].begin(), rows[i].end());
  }
  return from_rows(rows, n, device, index_dtype);
}

}  // namespace brain::connect
