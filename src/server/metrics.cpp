#include "server/metrics.h"

#include <fmt/format.h>

namespace facelogin::server {

void Metrics::count(const std::string& name, const std::string& labels, std::uint64_t by) {
  std::lock_guard lock(mu_);
  counters_[{name, labels}] += by;
}

void Metrics::observe(const std::string& name, const std::string& labels, double seconds) {
  std::lock_guard lock(mu_);
  Histogram& h = histograms_[{name, labels}];
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      ++h.buckets[i];
    }
  }
  ++h.count;
  h.sum += seconds;
}

void Metrics::gauge(const std::string& name, const std::string& help,
                    std::function<double()> read) {
  std::lock_guard lock(mu_);
  gauges_[name] = {help, std::move(read)};
}

void Metrics::describe(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  help_[name] = help;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  const auto header = [&](const std::string& name, const char* type) {
    if (auto it = help_.find(name); it != help_.end()) {
      out += fmt::format("# HELP {} {}\n", name, it->second);
    }
    out += fmt::format("# TYPE {} {}\n", name, type);
  };
  std::string last;
  for (const auto& [key, value] : counters_) {
    if (key.first != last) {
      header(key.first, "counter");
      last = key.first;
    }
    out += key.second.empty() ? fmt::format("{} {}\n", key.first, value)
                              : fmt::format("{}{{{}}} {}\n", key.first, key.second, value);
  }
  last.clear();
  for (const auto& [key, h] : histograms_) {
    if (key.first != last) {
      header(key.first, "histogram");
      last = key.first;
    }
    const std::string sep = key.second.empty() ? "" : key.second + ",";
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      out +=
          fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", key.first, sep, kBuckets[i], h.buckets[i]);
    }
    out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", key.first, sep, h.count);
    const std::string labels = key.second.empty() ? "" : "{" + key.second + "}";
    out += fmt::format("{}_sum{} {}\n", key.first, labels, h.sum);
    out += fmt::format("{}_count{} {}\n", key.first, labels, h.count);
  }
  for (const auto& [name, g] : gauges_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, g.first, name, name,
                       g.second());
  }
  return out;
}

}  // namespace facelogin::server
