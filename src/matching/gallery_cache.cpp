// GalleryCache: see include/facelogin/gallery.h.

#include "facelogin/gallery.h"

namespace facelogin {

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
  auto gallery = Gallery::build(*templates, model_id, precision_);
  if (!gallery) {
    return make_error(gallery.error());
  }
  auto entry = std::make_shared<Entry>();
  entry->gallery = std::make_shared<const Gallery>(std::move(*gallery));
  entry->generation = *generation;
  for (const UserInfo& u : *users) {
    entry->names.emplace(u.id, u.name);
  }
  std::lock_guard lock(mu_);
  auto& slot = entries_[std::string(model_id)];
  if (!slot || slot->generation < entry->generation) {
    slot = entry;
  }
  ++rebuilds_;
  return std::shared_ptr<const Entry>(entry);
}

int GalleryCache::rebuilds() const {
  std::lock_guard lock(mu_);
  return rebuilds_;
}

}  // namespace facelogin
