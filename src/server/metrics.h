#pragma once

// Counters and latency histograms for /metrics, in the Prometheus text exposition format.
// Names and label values are fixed by the server's code (routes, outcomes), never taken from a
// request, so a client cannot grow the set of series.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace facelogin::server {

class Metrics {
 public:
  // Adds 1 to counter `name` with `labels` already formatted ("route=\"login\",status=\"200\"").
  void count(const std::string& name, const std::string& labels, std::uint64_t by = 1);
  // Records one observation in seconds.
  void observe(const std::string& name, const std::string& labels, double seconds);
  // Gauges are read when /metrics is scraped.
  void gauge(const std::string& name, const std::string& help, std::function<double()> read);
  // Help text for a counter or histogram (once per name).
  void describe(const std::string& name, const std::string& help);

  std::string render() const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                                      0.15,  0.25, 0.5,   1.0,  2.5,   5.0};
  struct Histogram {
    std::array<std::uint64_t, kBuckets.size()> buckets{};
    std::uint64_t count = 0;
    double sum = 0;
  };

  mutable std::mutex mu_;
  std::map<std::string, std::string> help_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> counters_;
  std::map<std::pair<std::string, std::string>, Histogram> histograms_;
  std::map<std::string, std::pair<std::string, std::function<double()>>> gauges_;
};

}  // namespace facelogin::server
