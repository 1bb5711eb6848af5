// GalleryCache: see include/facelogin/gallery.h.

#include <algorithm>

#include "facelogin/gallery.h"
#include "matching/dot.h"

namespace facelogin {

std::vector<Candidate> GalleryCache::Entry::search(const FaceTemplate& probe,
                                                   std::size_t k) const {
  if (!index) {
    return gallery->search(probe, k);
  }
  // The index's users and the tail's, each user at their best, then the k best.
  detail::BestScores best;
  for (const auto& part : {index->search(probe, k, alive), gallery->search(probe, k)}) {
    for (const Candidate& c : part) {
      detail::keep_best(best, c.user_id, c.score);
    }
  }
  return detail::top_users(best, k);
}

std::size_t GalleryCache::Entry::templates() const {
  return index ? alive.size() : gallery->size();
}

GalleryCache::~GalleryCache() {
  cancel_ = true;
  if (builder_.joinable()) {
    builder_.join();
  }
}

Result<std::shared_ptr<const GalleryCache::Entry>> GalleryCache::current(
    const Store& store, std::string_view model_id) {
  // The generation is read before the templates, so an entry never claims to be newer than
  // what it holds: a write in between only makes the next search rebuild again.
  auto generation = store.templates_generation();
  if (!generation) {
    return make_error(generation.error());
  }
  auto fresh = [&]() -> std::shared_ptr<const Entry> {
    std::lock_guard lock(mu_);
    auto it = entries_.find(model_id);
    // The generation only grows: an entry built at a later one is at least as fresh.
    return it != entries_.end() && it->second->generation >= *generation ? it->second : nullptr;
  };
  if (auto entry = fresh()) {
    return entry;
  }
  std::lock_guard rebuilding(rebuild_mu_);
  if (auto entry = fresh()) {  // another thread rebuilt it meanwhile
    return entry;
  }
  auto templates = store.all_templates(model_id);
  if (!templates) {
    return make_error(templates.error());
  }
  auto users = store.list_users();
  if (!users) {
    return make_error(users.error());
  }
  auto entry = std::make_shared<Entry>();
  entry->generation = *generation;
  for (const UserInfo& u : *users) {
    entry->names.emplace(u.id, u.name);
  }

  std::span<const StoredTemplate> exact = *templates;
  std::vector<StoredTemplate> tail;
  const bool approximate =
      options_.approximate_above > 0 && templates->size() > options_.approximate_above;
  if (approximate) {
    std::shared_ptr<const ApproximateIndex> index;
    {
      std::lock_guard lock(mu_);
      if (auto it = indexes_.find(model_id); it != indexes_.end()) {
        index = it->second;
      }
    }
    std::size_t covered = 0;
    for (const StoredTemplate& t : *templates) {
      if (index && index->contains(t.id)) {
        ++covered;
      } else {
        tail.push_back(t);
      }
    }
    const std::size_t removed = index ? index->size() - covered : 0;
    if (!index || removed > index->size() / 5 ||
        tail.size() > std::max<std::size_t>(1024, index->size() / 20)) {
      // Searched meanwhile exactly, or through the old index (skipping what was removed) and
      // the tail.
      std::lock_guard lock(mu_);
      start_index_build(std::string(model_id), *templates);
    }
    if (index) {
      entry->index = index;
      entry->alive.reserve(templates->size());
      for (const StoredTemplate& t : *templates) {
        entry->alive.push_back(t.id);
      }
      std::sort(entry->alive.begin(), entry->alive.end());
      exact = tail;
    }
  }
  auto gallery = Gallery::build(exact, model_id, options_.precision);
  if (!gallery) {
    return make_error(gallery.error());
  }
  entry->gallery = std::make_shared<const Gallery>(std::move(*gallery));
  if (options_.estimate_population) {
    entry->population = update_population(model_id, *templates);
    entry->population_estimate = entry->population.estimate();
  }
  std::lock_guard lock(mu_);
  auto& slot = entries_[std::string(model_id)];
  if (!slot || slot->generation < entry->generation) {
    slot = entry;
  }
  ++rebuilds_;
  return std::shared_ptr<const Entry>(entry);
}

ImpostorScores GalleryCache::update_population(std::string_view model_id,
                                               std::span<const StoredTemplate> templates) {
  std::map<std::int64_t, std::vector<std::int64_t>> ids;
  std::map<std::int64_t, std::vector<std::vector<float>>> vectors;
  for (const StoredTemplate& t : templates) {
    ids[t.user_id].push_back(t.id);
    vectors[t.user_id].push_back(t.face.embedding);
  }
  for (auto& [user, user_ids] : ids) {
    std::sort(user_ids.begin(), user_ids.end());  // compared as sets below
  }
  auto it = populations_.find(model_id);
  if (it == populations_.end()) {
    it = populations_.emplace(std::string(model_id), Population{}).first;
  }
  Population& pop = it->second;
  const std::size_t dim = templates.empty() ? 0 : templates.front().face.embedding.size();
  if (!pop.scores || (dim != 0 && pop.scores->dim() != dim)) {
    // The first build (or a recogniser of another size): score everyone at once.
    pop.scores = std::make_unique<ImpostorPopulation>(dim, options_.population);
    pop.scores->reset(std::move(vectors));
    pop.template_ids = std::move(ids);
    return pop.scores->scores();
  }
  for (auto old = pop.template_ids.begin(); old != pop.template_ids.end();) {
    if (!ids.contains(old->first)) {
      pop.scores->remove_user(old->first);
      old = pop.template_ids.erase(old);
    } else {
      ++old;
    }
  }
  for (auto& [user, user_ids] : ids) {
    auto known = pop.template_ids.find(user);
    if (known == pop.template_ids.end() || known->second != user_ids) {
      pop.scores->set_user(user, std::move(vectors[user]));
      pop.template_ids[user] = user_ids;
    }
  }
  return pop.scores->scores();
}

void GalleryCache::start_index_build(std::string model_id,
                                     std::vector<StoredTemplate> templates) {
  if (building_ || cancel_) {
    return;  // the running build is followed by another check at the next rebuild
  }
  if (builder_.joinable()) {
    builder_.join();  // finished: building_ is false
  }
  building_ = true;
  builder_ = std::thread([this, model_id = std::move(model_id), templates = std::move(templates)] {
    auto built = ApproximateIndex::build(templates, model_id, options_.approximate, &cancel_);
    std::lock_guard lock(mu_);
    building_ = false;
    if (!built) {
      return;  // cancelled, or out of memory: searches stay exact or on the old index
    }
    indexes_[model_id] = std::move(*built);
    ++index_builds_;
    // The next search rebuilds its entry around the new index (and a smaller tail).
    entries_.erase(model_id);
  });
}

std::shared_ptr<const GalleryCache::Entry> GalleryCache::latest(std::string_view model_id) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(model_id);
  return it == entries_.end() ? nullptr : it->second;
}

int GalleryCache::rebuilds() const {
  std::lock_guard lock(mu_);
  return rebuilds_;
}

int GalleryCache::index_builds() const {
  std::lock_guard lock(mu_);
  return index_builds_;
}

bool GalleryCache::index_building() const {
  std::lock_guard lock(mu_);
  return building_;
}

}  // namespace facelogin
