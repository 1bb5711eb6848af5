// What keeping the enrolled population's impostor scores costs (issue 15): the first scoring of
// a population of N templates (sampled above the claim budget), then one enrolment (a user of
// five templates added) and one removal, each the median of several, on one core. Random unit
// vectors of the default recogniser's size (640): the cost does not depend on the values.
//
//   ./build/facelogin_population_bench --sizes 1000,10000,100000 --repeats 5

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "facelogin/population.h"

namespace {

using facelogin::bench::Clock;
using facelogin::bench::median;
using facelogin::bench::ms_since;

std::vector<float> random_unit(std::mt19937& rng, std::size_t dim) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> v(dim);
  double n = 0;
  for (float& x : v) {
    x = g(rng);
    n += static_cast<double>(x) * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
  return v;
}

std::vector<std::vector<float>> person(std::mt19937& rng, std::size_t dim, int templates) {
  std::vector<std::vector<float>> out;
  for (int k = 0; k < templates; ++k) out.push_back(random_unit(rng, dim));
  return out;
}

int usage() {
  std::cerr << "usage: facelogin_population_bench [--sizes N,N,...] [--repeats R] [--dim D]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes = {1000, 10000, 100000};
  int repeats = 5;
  std::size_t dim = 640;
  constexpr int kPerUser = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string value = argv[++i];
    if (arg == "--sizes") {
      sizes.clear();
      std::stringstream list(value);
      for (std::string item; std::getline(list, item, ',');) {
        sizes.push_back(static_cast<std::size_t>(std::strtoull(item.c_str(), nullptr, 10)));
      }
    } else if (arg == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else if (arg == "--dim") {
      dim = static_cast<std::size_t>(std::strtoull(value.c_str(), nullptr, 10));
    } else {
      return usage();
    }
  }
  std::cout << fmt::format("{:>10} {:>8} {:>14} {:>9} {:>16} {:>14} {:>14}\n", "templates",
                           "users", "claims", "sampled", "first score (s)", "enrol (ms)",
                           "remove (ms)");
  std::mt19937 rng(1);
  for (std::size_t templates : sizes) {
    const std::size_t users = std::max<std::size_t>(templates / kPerUser, 2);
    std::map<std::int64_t, std::vector<std::vector<float>>> all;
    for (std::size_t u = 0; u < users; ++u) {
      all[static_cast<std::int64_t>(u)] = person(rng, dim, kPerUser);
    }
    facelogin::ImpostorPopulation population(dim);
    auto t0 = Clock::now();
    population.reset(std::move(all));
    const double first_s = ms_since(t0) / 1000;
    std::vector<double> enrol_ms;
    std::vector<double> remove_ms;
    for (int r = 0; r < repeats; ++r) {
      const std::int64_t id = 1'000'000 + r;
      auto newcomer = person(rng, dim, kPerUser);
      t0 = Clock::now();
      population.set_user(id, std::move(newcomer));
      enrol_ms.push_back(ms_since(t0));
      t0 = Clock::now();
      population.remove_user(id);
      remove_ms.push_back(ms_since(t0));
    }
    const auto e = population.estimate();
    std::cout << fmt::format("{:>10} {:>8} {:>14} {:>9} {:>16.2f} {:>14.1f} {:>14.1f}\n",
                             population.templates(), population.users(), population.claims(),
                             e.sampled ? "yes" : "no", first_s, median(enrol_ms),
                             median(remove_ms))
              << std::flush;
  }
  return 0;
}
