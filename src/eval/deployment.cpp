// A deployment simulated on a folder of people (issue 15): enrolment as FaceService does it, the
// population-aware operating threshold, and every 1:1 claim and 1:N search decided at it.

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>

#include "facelogin/eval.h"
#include "matching/dot.h"

namespace facelogin::eval {
namespace {

// The impostor histogram of the hindsight threshold, in the population estimator's resolution.
constexpr int kBinsPerUnit = ImpostorPopulation::kBinsPerUnit;
constexpr int kBins = 2 * kBinsPerUnit;

int bin_of(float score) {
  const double b = std::floor((static_cast<double>(score) + 1.0) * kBinsPerUnit);
  return static_cast<int>(std::clamp(b, 0.0, static_cast<double>(kBins - 1)));
}

float bin_start(int bin) { return static_cast<float>(static_cast<double>(bin) / kBinsPerUnit - 1.0); }

// The threshold the product would run with on `population`: never below the recogniser's own.
float operating_threshold(const PopulationEstimate& e, float model_threshold) {
  return e.usable && e.threshold ? std::max(model_threshold, *e.threshold) : model_threshold;
}

double ratio(std::uint64_t n, std::uint64_t of) {
  return of == 0 ? 0.0 : static_cast<double>(n) / static_cast<double>(of);
}

struct Person {
  std::string name;
  std::vector<std::size_t> images;  // indices into the input, in key order
  std::vector<std::size_t> enrolled;  // the images enrolled (empty: not enrolled)
};

// Per-thread counts of the claims at the two thresholds.
struct Tally {
  DeploymentRates rates[2];
  std::vector<std::uint64_t> impostor_bins = std::vector<std::uint64_t>(kBins, 0);
  std::vector<float> genuine;  // best score of every genuine claim
};

void add(DeploymentRates& into, const DeploymentRates& r) {
  into.impostor_claims += r.impostor_claims;
  into.false_accepts += r.false_accepts;
  into.enrolled_impostor_claims += r.enrolled_impostor_claims;
  into.enrolled_false_accepts += r.enrolled_false_accepts;
  into.genuine_claims += r.genuine_claims;
  into.false_rejects += r.false_rejects;
  into.identification_probes += r.identification_probes;
  into.false_identifications += r.false_identifications;
  into.genuine_identification_probes += r.genuine_identification_probes;
  into.identification_misses += r.identification_misses;
}

void finish(DeploymentRates& r) {
  r.fmr = ratio(r.false_accepts, r.impostor_claims);
  r.enrolled_fmr = ratio(r.enrolled_false_accepts, r.enrolled_impostor_claims);
  r.fnmr = ratio(r.false_rejects, r.genuine_claims);
  r.false_identification_rate = ratio(r.false_identifications, r.identification_probes);
  r.identification_miss_rate = ratio(r.identification_misses, r.genuine_identification_probes);
}

Status check_options(std::span<const DeploymentImage> images, std::size_t dim,
                     const DeploymentOptions& options) {
  if (dim == 0) {
    return Status(ErrorCode::kInvalidArgument, "templates of 0 floats");
  }
  if (options.enrol == 0) {
    return Status(ErrorCode::kInvalidArgument, "an enrolment needs at least one image");
  }
  if (!std::isfinite(options.model_threshold) || !std::isfinite(options.same_person_threshold)) {
    return Status(ErrorCode::kInvalidArgument, "thresholds must be finite");
  }
  const double target = options.population.target_fmr;
  if (!(target > 0 && target < 1)) {
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("target FMR {} is not between 0 and 1", target));
  }
  if (images.empty()) {
    return Status(ErrorCode::kInvalidArgument, "no images: nothing to enrol");
  }
  for (const auto& image : images) {
    if (image.face && image.face->size() != dim) {
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: template of {} floats, {} expected", image.key,
                                image.face->size(), dim));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<DeploymentReport> simulate_deployment(std::span<const DeploymentImage> images,
                                             std::size_t dim, const DeploymentOptions& options) {
  if (Status s = check_options(images, dim, options); !s.ok()) {
    return make_error(std::move(s));
  }
  const detail::DotFn dot = detail::best_dot_f32();
  const float* const no_face = nullptr;
  const auto face_of = [&](std::size_t i) {
    return images[i].face ? images[i].face->data() : no_face;
  };

  // People in name order, each person's images in key order.
  std::vector<Person> people;
  {
    std::map<std::string, std::vector<std::size_t>, std::less<>> by_person;
    for (std::size_t i = 0; i < images.size(); ++i) {
      by_person[std::string(key_identity(images[i].key))].push_back(i);
    }
    for (auto& [name, list] : by_person) {
      std::sort(list.begin(), list.end(),
                [&](std::size_t a, std::size_t b) { return images[a].key < images[b].key; });
      people.push_back({name, std::move(list), {}});
    }
  }

  DeploymentReport report;
  report.people = people.size();
  report.images = images.size();
  report.model_threshold = options.model_threshold;
  for (const auto& image : images) {
    if (image.face) {
      ++report.usable_images;
    } else {
      ++report.unusable[image.unusable.empty() ? std::string("unusable") : image.unusable];
    }
  }

  // Enrolment, person by person, against everyone enrolled before (the product's order of
  // events), with the operating threshold of the population enrolled so far in force.
  ImpostorPopulation everyone(dim, options.population);
  std::vector<float> gallery;              // every enrolled template, row by row
  std::vector<std::size_t> gallery_owner;  // its person
  float in_force = options.model_threshold;
  for (std::size_t p = 0; p < people.size(); ++p) {
    Person& person = people[p];
    DeploymentPerson out;
    out.name = person.name;
    out.images = person.images.size();
    out.threshold_in_force = in_force;
    std::vector<std::size_t> usable;
    for (std::size_t i : person.images) {
      if (images[i].face) {
        usable.push_back(i);
      }
    }
    out.usable = usable.size();
    if (usable.size() < options.enrol) {
      out.status = "too_few_images";
      out.detail = fmt::format("{} usable image(s), {} needed", usable.size(), options.enrol);
      report.persons.push_back(std::move(out));
      continue;
    }
    const std::vector<std::size_t> faces(usable.begin(),
                                         usable.begin() + static_cast<std::ptrdiff_t>(options.enrol));
    // FaceService::enroll_templates: the duplicate check first, so that another user's face is
    // reported as such, then the same-person check.
    for (std::size_t i : faces) {
      if (!options.check_duplicates) {
        break;
      }
      for (std::size_t row = 0; row < gallery_owner.size() && out.status.empty(); ++row) {
        const float s = dot(face_of(i), gallery.data() + row * dim, dim);
        if (s >= in_force) {
          out.status = "duplicate_face";
          out.detail = fmt::format("{} scores {:.4f} against {} (threshold {:.4f})",
                                   images[i].key, s, people[gallery_owner[row]].name, in_force);
        }
      }
    }
    const float same_person = std::min(options.same_person_threshold, in_force);
    for (std::size_t a = 0; a < faces.size() && out.status.empty(); ++a) {
      for (std::size_t b = a + 1; b < faces.size() && out.status.empty(); ++b) {
        const float s = dot(face_of(faces[a]), face_of(faces[b]), dim);
        if (s < same_person) {
          out.status = "different_people";
          out.detail = fmt::format("{} and {} score {:.4f} ({:.4f} needed)", images[faces[a]].key,
                                   images[faces[b]].key, s, same_person);
        }
      }
    }
    if (!out.status.empty()) {
      report.persons.push_back(std::move(out));
      continue;
    }
    out.status = "enrolled";
    person.enrolled = faces;
    std::vector<std::vector<float>> templates;
    for (std::size_t i : faces) {
      templates.push_back(*images[i].face);
      gallery.insert(gallery.end(), images[i].face->begin(), images[i].face->end());
      gallery_owner.push_back(p);
    }
    everyone.set_user(static_cast<std::int64_t>(p), std::move(templates));
    in_force = operating_threshold(everyone.estimate(), options.model_threshold);
    report.persons.push_back(std::move(out));
  }
  for (const auto& person : report.persons) {
    if (person.status == "enrolled") {
      ++report.enrolled_people;
    } else {
      ++report.refused[person.status];
    }
  }
  report.enrolled_templates = gallery_owner.size();
  if (report.enrolled_people < 2) {
    return make_error(ErrorCode::kInvalidArgument,
                      fmt::format("{} of {} people enrolled ({} usable images, {} per enrolment): "
                                  "a deployment needs at least 2",
                                  report.enrolled_people, report.people, report.usable_images,
                                  options.enrol));
  }

  // The calibration people of a held-out run, drawn from the enrolled ones.
  std::vector<char> calibration(people.size(), 0);
  std::vector<std::size_t> enrolled_people;
  for (std::size_t p = 0; p < people.size(); ++p) {
    if (!people[p].enrolled.empty()) {
      enrolled_people.push_back(p);
    }
  }
  if (options.calibrate_people > 0) {
    if (options.calibrate_people + 2 > enrolled_people.size()) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{} calibration people of {} enrolled leave fewer than 2 "
                                    "people to measure on",
                                    options.calibrate_people, enrolled_people.size()));
    }
    std::vector<std::size_t> drawn = enrolled_people;
    std::mt19937_64 rng(options.seed);
    std::shuffle(drawn.begin(), drawn.end(), rng);
    drawn.resize(options.calibrate_people);
    for (std::size_t p : drawn) {
      calibration[p] = 1;
      report.persons[p].calibration = true;
    }
    report.held_out = true;
    report.calibration_people = options.calibrate_people;
  }

  // The estimate, and the operating threshold, from the population that calibrates.
  std::optional<ImpostorPopulation> subset;
  if (report.held_out) {
    subset.emplace(dim, options.population);
    for (std::size_t p : enrolled_people) {
      if (calibration[p]) {
        std::vector<std::vector<float>> templates;
        for (std::size_t i : people[p].enrolled) {
          templates.push_back(*images[i].face);
        }
        subset->set_user(static_cast<std::int64_t>(p), std::move(templates));
      }
    }
  }
  const ImpostorPopulation& estimator = subset ? *subset : everyone;
  report.estimate = estimator.estimate();
  report.operating_threshold = operating_threshold(report.estimate, options.model_threshold);
  report.predicted_fmr_operating = estimator.fmr_at(report.operating_threshold);
  report.predicted_fmr_model = estimator.fmr_at(options.model_threshold);

  // The measured gallery: enrolled people outside the calibration set, templates by user.
  std::vector<std::size_t> user_person;  // measured user -> person
  std::vector<std::int64_t> person_user(people.size(), -1);
  std::vector<float> targets;
  std::vector<std::size_t> user_rows{0};  // user u's rows: [user_rows[u], user_rows[u + 1])
  for (std::size_t p : enrolled_people) {
    if (calibration[p]) {
      continue;
    }
    person_user[p] = static_cast<std::int64_t>(user_person.size());
    user_person.push_back(p);
    for (std::size_t i : people[p].enrolled) {
      targets.insert(targets.end(), images[i].face->begin(), images[i].face->end());
    }
    user_rows.push_back(user_rows.back() + people[p].enrolled.size());
  }
  report.measured_people = user_person.size();

  // Probes: every usable image not enrolled, of people outside the calibration set.
  struct Probe {
    std::size_t image;
    std::int64_t own;  // the probe's measured user, -1 if the person is not one
  };
  std::vector<Probe> probes;
  for (std::size_t p = 0; p < people.size(); ++p) {
    std::size_t count = 0;
    for (std::size_t i : people[p].images) {
      if (images[i].face &&
          std::find(people[p].enrolled.begin(), people[p].enrolled.end(), i) ==
              people[p].enrolled.end()) {
        ++count;
        if (!calibration[p]) {
          probes.push_back({i, person_user[p]});
        }
      }
    }
    report.persons[p].probes = count;
    report.probes += count;
  }
  report.measured_probes = probes.size();

  // Every probe against every measured user, split over threads.
  const float thresholds[2] = {report.operating_threshold, options.model_threshold};
  const std::size_t users = user_person.size();
  int threads = options.threads > 0
                    ? options.threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(
      std::clamp<std::size_t>(static_cast<std::size_t>(threads), 1, std::max<std::size_t>(probes.size(), 1)));
  std::vector<Tally> tallies(static_cast<std::size_t>(threads));
  std::atomic<std::size_t> next{0};
  const auto work = [&](Tally& tally) {
    std::vector<float> best(users);
    constexpr std::size_t kChunk = 16;
    for (std::size_t begin = next.fetch_add(kChunk); begin < probes.size();
         begin = next.fetch_add(kChunk)) {
      const std::size_t end = std::min(begin + kChunk, probes.size());
      for (std::size_t k = begin; k < end; ++k) {
        const Probe& probe = probes[k];
        const float* x = face_of(probe.image);
        std::size_t top = 0;
        for (std::size_t u = 0; u < users; ++u) {
          float b = -2.f;
          for (std::size_t row = user_rows[u]; row < user_rows[u + 1]; ++row) {
            b = std::max(b, dot(x, targets.data() + row * dim, dim));
          }
          best[u] = b;
          if (b > best[top]) {
            top = u;  // ties keep the lower user, as search() does
          }
          if (static_cast<std::int64_t>(u) == probe.own) {
            tally.genuine.push_back(b);
          } else {
            ++tally.impostor_bins[static_cast<std::size_t>(bin_of(b))];
          }
        }
        for (int t = 0; t < 2; ++t) {
          DeploymentRates& r = tally.rates[t];
          const float threshold = thresholds[t];
          for (std::size_t u = 0; u < users; ++u) {
            if (static_cast<std::int64_t>(u) == probe.own) {
              ++r.genuine_claims;
              r.false_rejects += best[u] < threshold ? 1 : 0;
            } else {
              const std::uint64_t accepted = best[u] >= threshold ? 1 : 0;
              ++r.impostor_claims;
              r.false_accepts += accepted;
              if (probe.own >= 0) {
                ++r.enrolled_impostor_claims;
                r.enrolled_false_accepts += accepted;
              }
            }
          }
          if (users == 0) {
            continue;
          }
          const bool right = static_cast<std::int64_t>(top) == probe.own;
          const bool accepted = best[top] >= threshold;
          ++r.identification_probes;
          r.false_identifications += !right && accepted ? 1 : 0;
          if (probe.own >= 0) {
            ++r.genuine_identification_probes;
            r.identification_misses += !right || !accepted ? 1 : 0;
          }
        }
      }
    }
  };
  {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) {
      pool.emplace_back(work, std::ref(tallies[static_cast<std::size_t>(t)]));
    }
    work(tallies[0]);
    for (auto& t : pool) {
      t.join();
    }
  }

  Tally total;
  for (const Tally& t : tallies) {
    add(total.rates[0], t.rates[0]);
    add(total.rates[1], t.rates[1]);
    for (int b = 0; b < kBins; ++b) {
      total.impostor_bins[static_cast<std::size_t>(b)] += t.impostor_bins[static_cast<std::size_t>(b)];
    }
    total.genuine.insert(total.genuine.end(), t.genuine.begin(), t.genuine.end());
  }
  report.at_operating = total.rates[0];
  report.at_operating.threshold = thresholds[0];
  report.at_model = total.rates[1];
  report.at_model.threshold = thresholds[1];
  finish(report.at_operating);
  finish(report.at_model);

  // Hindsight: what threshold these claims needed for the target.
  const std::uint64_t claims = report.at_operating.impostor_claims;
  if (claims > 0) {
    const double allowed = options.population.target_fmr * static_cast<double>(claims);
    std::uint64_t above = 0;
    int b = kBins - 1;
    for (; b >= 0; --b) {
      above += total.impostor_bins[static_cast<std::size_t>(b)];
      if (static_cast<double>(above) > allowed) {
        break;
      }
    }
    const float t = bin_start(std::min(b + 1, kBins - 1));
    report.measured_threshold_for_target = t;
    if (!total.genuine.empty()) {
      const auto rejected = std::count_if(total.genuine.begin(), total.genuine.end(),
                                          [t](float s) { return s < t; });
      report.fnmr_at_measured_threshold =
          ratio(static_cast<std::uint64_t>(rejected), total.genuine.size());
    }
  }
  return report;
}

}  // namespace facelogin::eval
