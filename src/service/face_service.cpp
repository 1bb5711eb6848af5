#include "facelogin/face_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace facelogin {
namespace {

// A frame without exactly one usable face: for streams a result to report, not an error.
bool is_unusable_frame(ErrorCode code) {
  return code == ErrorCode::kNoFace || code == ErrorCode::kSeveralFaces ||
         code == ErrorCode::kPoorQuality;
}

}  // namespace

FaceService::FaceService(std::shared_ptr<const Engine> engine, std::unique_ptr<Worker> worker,
                         Store& store, ServiceOptions options)
    : engine_(std::move(engine)),
      worker_(std::move(worker)),
      store_(store),
      options_(std::move(options)),
      gallery_(options_.gallery ? options_.gallery : std::make_shared<GalleryCache>()) {}

float FaceService::threshold() const {
  return std::isnan(options_.threshold_override) ? engine_->recognizer().cosine_threshold()
                                                 : options_.threshold_override;
}

Result<PopulationStatus> FaceService::population_status(bool refresh) {
  PopulationStatus status;
  status.enabled = options_.population_threshold;
  status.base_threshold = threshold();
  status.operating_threshold = status.base_threshold;
  if (!status.enabled) {
    return status;
  }
  std::shared_ptr<const GalleryCache::Entry> entry =
      refresh ? nullptr : gallery_->latest(engine_->recognizer().id);
  if (!entry) {
    auto current = gallery_->current(store_, engine_->recognizer().id);
    if (!current) {
      return make_error(current.error());
    }
    entry = std::move(*current);
  }
  const ImpostorScores& scores = entry->population;
  status.estimate = entry->population_estimate;
  if (status.estimate.usable && status.estimate.threshold) {
    status.operating_threshold = std::max(status.base_threshold, *status.estimate.threshold);
  }
  status.fmr_at_base = scores.fmr_at(status.base_threshold);
  status.fmr_at_operating = scores.fmr_at(status.operating_threshold);
  return status;
}

Result<float> FaceService::decision_threshold() {
  const float base = threshold();
  if (!options_.population_threshold) {
    return base;
  }
  // Once per decision: a cheap generation check, and the estimate made when the gallery was.
  auto entry = gallery_->current(store_, engine_->recognizer().id);
  if (!entry) {
    return make_error(entry.error());
  }
  const PopulationEstimate& e = (*entry)->population_estimate;
  return e.usable && e.threshold ? std::max(base, *e.threshold) : base;
}

float FaceService::early_margin() const {
  return options_.early_decision ? engine_->recognizer().first_pass_margin : 0.f;
}

Result<FaceTemplate> FaceService::usable_face(const LabeledImage& image, ImageReport* report,
                                              float extra_yaw_degrees,
                                              std::function<bool(const FaceTemplate&)> decided) {
  report->source = image.source;
  AnalyzeOptions analyze = options_.analyze;
  analyze.extra_yaw_degrees += extra_yaw_degrees;
  analyze.decided_by_first_pass = std::move(decided);
  auto analysis = worker_->analyze(image.image, analyze);
  if (!analysis) {
    return make_error(analysis.error());
  }
  report->outcome = analysis->outcome;
  report->message = analysis->message;
  report->quality = analysis->quality;
  report->timings = analysis->timings;
  report->first_pass = analysis->face && analysis->face->first_pass;
  if (analysis->subject) {
    report->box = analysis->faces[*analysis->subject].box;
    report->landmarks = analysis->faces[*analysis->subject].landmarks;
  }
  switch (analysis->outcome) {
    case FrameOutcome::kOk:
      break;
    case FrameOutcome::kNoFace:
      return make_error(ErrorCode::kNoFace, fmt::format("{}: {}", image.source, analysis->message));
    case FrameOutcome::kSeveralFaces:
      return make_error(ErrorCode::kSeveralFaces,
                        fmt::format("{}: {}", image.source, analysis->message));
    case FrameOutcome::kPoorQuality:
      return make_error(ErrorCode::kPoorQuality,
                        fmt::format("{}: {}", image.source, analysis->message));
  }
  if (!analysis->face) {
    return make_error(ErrorCode::kInternal, "analysis returned no template");
  }
  return std::move(*analysis->face);
}

float FaceService::same_person_threshold() const {
  return std::min(engine_->recognizer().same_person_threshold, threshold());
}

Status FaceService::check_same_person(std::string_view name,
                                      const std::vector<std::string>& sources,
                                      const std::vector<FaceTemplate>& templates, bool add) {
  const float needed = same_person_threshold();
  for (std::size_t i = 0; i < templates.size(); ++i) {
    for (std::size_t j = i + 1; j < templates.size(); ++j) {
      auto s = similarity(templates[i], templates[j]);
      if (!s) {
        return s.error();
      }
      if (*s < needed) {
        return Status(ErrorCode::kDifferentPeople,
                      fmt::format("{} and {} do not look like the same person (score {:.3f}, "
                                  "{:.3f} needed): enrol one person at a time, from clear, "
                                  "recent photos",
                                  sources[i], sources[j], *s, needed));
      }
    }
  }
  if (!add) {
    return Status::Ok();
  }
  // Faces added later must look like the faces the user already has: otherwise anyone allowed
  // to add faces could add their own to someone else's account.
  auto existing = store_.user_templates(name);
  if (!existing) {
    return existing.error();
  }
  std::vector<const FaceTemplate*> same_model;
  for (const auto& t : *existing) {
    if (t.face.model_id == engine_->recognizer().id) {
      same_model.push_back(&t.face);
    }
  }
  if (same_model.empty()) {
    return Status::Ok();  // enrolled with another recogniser only: this is the re-enrolment
  }
  for (std::size_t i = 0; i < templates.size(); ++i) {
    float best = -1.f;
    for (const FaceTemplate* t : same_model) {
      auto s = similarity(templates[i], *t);
      if (!s) {
        return s.error();
      }
      best = std::max(best, *s);
    }
    if (best < needed) {
      return Status(ErrorCode::kDifferentPeople,
                    fmt::format("{} does not look like the faces {} already has (best score "
                                "{:.3f}, {:.3f} needed)",
                                sources[i], name, best, needed));
    }
  }
  return Status::Ok();
}

Result<EnrollResult> FaceService::enroll(std::string_view name,
                                         const std::vector<LabeledImage>& images, bool add) {
  if (Status s = validate_user_name(name); !s.ok()) {
    return make_error(s);
  }
  if (images.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "enrolment needs at least one image");
  }
  EnrollResult result;
  std::vector<FaceTemplate> templates;
  for (const auto& image : images) {
    ImageReport report;
    auto face = usable_face(image, &report);
    result.images.push_back(report);
    if (!face) {
      return make_error(face.error());
    }
    templates.push_back(std::move(*face));
  }

  std::vector<std::string> sources;
  for (const auto& image : images) {
    sources.push_back(image.source);
  }
  auto user = enroll_templates(name, templates, sources, add);
  if (!user) {
    return make_error(user.error());
  }
  result.user = std::move(*user);
  return result;
}

Result<FrameCheck> FaceService::check_frame(const LabeledImage& image) {
  FrameCheck check;
  auto face = usable_face(image, &check.image);
  if (!face) {
    if (is_unusable_frame(face.error().code())) {
      return check;  // the report says why
    }
    return make_error(face.error());
  }
  check.face = std::move(*face);
  return check;
}

Result<ImageReport> FaceService::probe_frame(const LabeledImage& image, float extra_yaw_degrees) {
  ImageReport report;
  std::function<bool(const FaceTemplate&)> decided;
  if (early_margin() > 0.f) {
    decided = [](const FaceTemplate&) { return true; };
  }
  auto face = usable_face(image, &report, extra_yaw_degrees, std::move(decided));
  if (!face && !is_unusable_frame(face.error().code())) {
    return make_error(face.error());
  }
  return report;
}

Result<UserInfo> FaceService::enroll_templates(std::string_view name,
                                               const std::vector<FaceTemplate>& templates,
                                               const std::vector<std::string>& sources, bool add) {
  if (Status s = validate_user_name(name); !s.ok()) {
    return make_error(s);
  }
  if (templates.empty() || templates.size() != sources.size()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "enrolment needs at least one face, each with its source");
  }
  for (std::size_t i = 0; i < templates.size(); ++i) {
    if (templates[i].first_pass) {
      return make_error(ErrorCode::kInvalidArgument,
                        fmt::format("{}: a first-pass template (made for a comparison) cannot "
                                    "be enrolled",
                                    sources[i]));
    }
  }
  // A face that already belongs to someone else must not become a second identity. The other
  // user is not named: the caller may not be entitled to know who it is.
  auto gallery = store_.all_templates(engine_->recognizer().id);
  if (!gallery) {
    return make_error(gallery.error());
  }
  // all_templates() leaves out disabled users, but a disabled user's face is still theirs: it
  // must not come back under a new name.
  auto users = store_.list_users();
  if (!users) {
    return make_error(users.error());
  }
  for (const auto& u : *users) {
    if (!u.disabled) {
      continue;
    }
    auto disabled = store_.user_templates(u.name);
    if (!disabled) {
      return make_error(disabled.error());
    }
    for (auto& t : *disabled) {
      if (t.face.model_id == engine_->recognizer().id) {
        gallery->push_back(std::move(t));
      }
    }
  }
  std::optional<std::int64_t> own_id;
  if (add) {
    auto user = store_.get_user(name);
    if (!user) {
      return make_error(user.error());
    }
    own_id = user->id;
  }
  auto duplicate_threshold = decision_threshold();
  if (!duplicate_threshold) {
    return make_error(duplicate_threshold.error());
  }
  for (std::size_t i = 0; i < templates.size(); ++i) {
    for (const auto& stored : *gallery) {
      if (own_id && stored.user_id == *own_id) {
        continue;
      }
      auto s = similarity(templates[i], stored.face);
      if (s && *s >= *duplicate_threshold) {
        return make_error(
            ErrorCode::kDuplicateFace,
            fmt::format("{}: this face is already enrolled under another user", sources[i]));
      }
    }
  }

  // After the duplicate check, so that another user's face is reported as such.
  if (Status s = check_same_person(name, sources, templates, add); !s.ok()) {
    return make_error(s);
  }

  if (add) {
    if (Status s = store_.add_templates(name, templates); !s.ok()) {
      return make_error(s);
    }
    auto user = store_.get_user(name);
    if (!user) {
      return make_error(user.error());
    }
    return *user;
  }
  auto user = store_.create_user(name, templates);
  if (!user) {
    return make_error(user.error());
  }
  return *user;
}

Result<VerifyResult> FaceService::verify(std::string_view name, const LabeledImage& image) {
  auto result = verify_frame(name, image);
  if (!result) {
    return make_error(result.error());
  }
  switch (result->image.outcome) {
    case FrameOutcome::kOk:
      return result;
    case FrameOutcome::kNoFace:
      return make_error(ErrorCode::kNoFace,
                        fmt::format("{}: {}", image.source, result->image.message));
    case FrameOutcome::kSeveralFaces:
      return make_error(ErrorCode::kSeveralFaces,
                        fmt::format("{}: {}", image.source, result->image.message));
    case FrameOutcome::kPoorQuality:
      return make_error(ErrorCode::kPoorQuality,
                        fmt::format("{}: {}", image.source, result->image.message));
  }
  return make_error(ErrorCode::kInternal, "unknown frame outcome");
}

Result<VerifyResult> FaceService::verify_frame(std::string_view name, const LabeledImage& image,
                                               float extra_yaw_degrees) {
  auto enrolled = store_.user_templates(name);
  if (!enrolled) {
    return make_error(enrolled.error());
  }
  auto user = store_.get_user(name);
  if (!user) {
    return make_error(user.error());
  }
  if (user->disabled) {
    return make_error(ErrorCode::kNotFound, fmt::format("user '{}' is disabled", name));
  }
  // Templates that can never be compared fail before the frame is analysed, as an unknown user
  // does, so that a login on such an account costs what one on an unknown account costs. A user
  // re-enrolled with this recogniser (enroll --add) still holds the other recogniser's
  // templates: only this one's are compared.
  const std::string& current = engine_->recognizer().id;
  const auto made_here = [&](const StoredTemplate& t) { return t.face.model_id == current; };
  if (std::none_of(enrolled->begin(), enrolled->end(), made_here)) {
    if (Status s = check_comparable(current, *enrolled); !s.ok()) {
      return make_error(std::move(s));
    }
  }
  std::erase_if(*enrolled, [&](const StoredTemplate& t) { return !made_here(t); });
  VerifyResult result;
  auto operating = decision_threshold();
  if (!operating) {
    return make_error(operating.error());
  }
  const float threshold = *operating;
  result.decision.threshold = threshold;
  std::function<bool(const FaceTemplate&)> decided;
  if (const float margin = early_margin(); margin > 0.f) {
    decided = [&, margin](const FaceTemplate& first_pass) {
      auto d = facelogin::verify(first_pass, *enrolled, threshold);
      return d && std::abs(d->score - threshold) >= margin;
    };
  }
  auto probe = usable_face(image, &result.image, extra_yaw_degrees, std::move(decided));
  if (!probe) {
    if (is_unusable_frame(probe.error().code())) {
      return result;  // the report says why
    }
    return make_error(probe.error());
  }
  auto decision = facelogin::verify(*probe, *enrolled, threshold);
  if (!decision) {
    return make_error(decision.error());
  }
  result.decision = *decision;
  return result;
}

Result<IdentifyResult> FaceService::identify(const LabeledImage& image, std::size_t k) {
  IdentifyResult result;
  auto operating = decision_threshold();
  if (!operating) {
    return make_error(operating.error());
  }
  result.threshold = *operating;
  auto probe = usable_face(image, &result.image);
  if (!probe) {
    return make_error(probe.error());
  }
  if (Status s = search_gallery(*probe, k, &result); !s.ok()) {
    return make_error(std::move(s));
  }
  return result;
}

Result<IdentifyResult> FaceService::identify_frame(const LabeledImage& image, std::size_t k,
                                                   float extra_yaw_degrees) {
  IdentifyResult result;
  auto operating = decision_threshold();
  if (!operating) {
    return make_error(operating.error());
  }
  result.threshold = *operating;
  // An early decision names one user at least the margin above the threshold while the next is
  // at least the margin below it, or finds nobody within the margin of it; anything closer is
  // left to the full template.
  std::optional<IdentifyResult> early;
  std::function<bool(const FaceTemplate&)> decided;
  if (const float margin = early_margin(); margin > 0.f) {
    decided = [&, margin](const FaceTemplate& first_pass) {
      IdentifyResult r;
      r.threshold = result.threshold;
      if (!search_gallery(first_pass, std::max<std::size_t>(k, 2), &r).ok()) {
        return false;  // the full pass searches again and reports the error
      }
      const auto& c = r.candidates;
      const float t = r.threshold;
      const bool nobody = c.empty() || c[0].score < t - margin;
      const bool one = !c.empty() && c[0].score >= t + margin &&
                       (c.size() < 2 || c[1].score < t - margin);
      if (!nobody && !one) {
        return false;
      }
      r.candidates.resize(std::min(k, r.candidates.size()));
      r.match = one && !r.candidates.empty();
      early = std::move(r);
      return true;
    };
  }
  auto probe = usable_face(image, &result.image, extra_yaw_degrees, std::move(decided));
  if (!probe) {
    if (is_unusable_frame(probe.error().code())) {
      return result;  // the report says why
    }
    return make_error(probe.error());
  }
  if (result.image.first_pass && early) {
    early->image = std::move(result.image);
    return std::move(*early);
  }
  if (Status s = search_gallery(*probe, k, &result); !s.ok()) {
    return make_error(std::move(s));
  }
  return result;
}

Status FaceService::search_gallery(const FaceTemplate& probe, std::size_t k,
                                   IdentifyResult* result) {
  auto entry = gallery_->current(store_, engine_->recognizer().id);
  if (!entry) {
    return entry.error();
  }
  for (const auto& c : (*entry)->search(probe, k)) {
    if (auto name = (*entry)->names.find(c.user_id); name != (*entry)->names.end()) {
      result->candidates.push_back({name->second, c.score});
    }
  }
  result->match =
      !result->candidates.empty() && result->candidates.front().score >= result->threshold;
  return Status::Ok();
}

std::string frame_advice(const ImageReport& report) {
  switch (report.outcome) {
    case FrameOutcome::kOk:
      return {};
    case FrameOutcome::kNoFace:
      return "Look at the camera so that your face is in view.";
    case FrameOutcome::kSeveralFaces:
      return "Only one face, please.";
    case FrameOutcome::kPoorQuality:
      return report.quality.issues.empty()
                 ? report.message
                 : std::string(quality_issue_advice(report.quality.issues.front()));
  }
  return report.message;
}

Result<std::string> store_recognizer(const Store& store) {
  const std::string fallback(default_recognizer_id());
  auto count = store.count_templates(fallback);
  if (!count) {
    return make_error(count.error());
  }
  if (*count > 0) {
    return fallback;
  }
  std::string best = fallback;
  std::int64_t most = 0;
  for (const RecognizerSpec& spec : recognizer_catalog()) {
    auto n = store.count_templates(spec.id);
    if (!n) {
      return make_error(n.error());
    }
    if (*n > most) {
      most = *n;
      best = spec.id;
    }
  }
  return best;
}

}  // namespace facelogin
