// Administration (admins only): users, the audit log, statistics.
// Thin adapters: parse the request, call the service, reply (see server/api.h).

#include "server/api.h"

#include <fmt/format.h>

#include <cctype>

#include "server/api_util.h"

namespace facelogin::server {
namespace {

// The decoded value of query parameter `name`, or "".
std::string query_param(const Request& request, std::string_view name) {
  std::string_view target = request.target();
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('&'), rest.size());
    const std::string_view item = rest.substr(0, end);
    rest = end < rest.size() ? rest.substr(end + 1) : std::string_view();
    const std::size_t eq = item.find('=');
    if (item.substr(0, eq) != name) {
      continue;
    }
    std::string value;
    const std::string_view raw = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        value += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
        value += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        value += raw[i];
      }
    }
    return value;
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Administration.

void Api::admin_users(Call& call) {
  auto users = deps_.store->list_users();
  auto admins = deps_.auth_store->admins();
  if (!users || !admins) {
    return reply_error(call, !users ? users.error() : admins.error());
  }
  std::string filter = query_param(call.exchange.request, "q");
  std::transform(filter.begin(), filter.end(), filter.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  json list = json::array();
  for (const auto& u : *users) {
    std::string lower = u.name;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (!filter.empty() && lower.find(filter) == std::string::npos) {
      continue;
    }
    list.push_back({{"user", u.name},
                    {"created_at", u.created_at},
                    {"disabled", u.disabled},
                    {"faces", u.template_count},
                    {"admin", std::find(admins->begin(), admins->end(), u.name) != admins->end()}});
  }
  reply_json(call, http::status::ok, {{"users", list}});
}

void Api::set_disabled(Call& call, bool disabled) {
  const std::string& name = call.params[0];
  if (Status s = validate_user_name(name); !s.ok()) {
    return reply_error(call, s);
  }
  if (disabled && call.session && name == call.session->user.name) {
    return reply_error(call, Status(ErrorCode::kForbidden, "you cannot disable yourself"));
  }
  if (Status s = deps_.store->set_disabled(name, disabled); !s.ok()) {
    return reply_error(call, s);
  }
  if (disabled) {
    if (Status s = deps_.auth_store->revoke_user_sessions(name); !s.ok()) {
      return reply_error(call, s);
    }
  }
  audit(call, disabled ? "disable_account" : "enable_account", actor(call, true), name, "ok");
  reply_json(call, http::status::ok, {{"user", name}, {"disabled", disabled}});
}

void Api::admin_disable(Call& call) { set_disabled(call, true); }
void Api::admin_enable(Call& call) { set_disabled(call, false); }

void Api::admin_delete(Call& call) {
  const std::string& name = call.params[0];
  if (Status s = validate_user_name(name); !s.ok()) {
    return reply_error(call, s);
  }
  if (call.session && name == call.session->user.name) {
    return reply_error(
        call, Status(ErrorCode::kForbidden, "delete your own account from your account page"));
  }
  if (Status s = deps_.store->remove_user(name); !s.ok()) {
    return reply_error(call, s);
  }
  audit(call, "delete_account", actor(call, true), name, "ok");
  reply_json(call, http::status::ok, {{"deleted", name}});
}

void Api::admin_audit(Call& call) {
  AuditQuery query;
  query.subject = query_param(call.exchange.request, "subject");
  const std::string before = query_param(call.exchange.request, "before");
  const std::string limit = query_param(call.exchange.request, "limit");
  const auto before_id = before.empty() ? std::optional<std::int64_t>(0) : parse_id(before);
  const auto limit_n = limit.empty() ? std::optional<std::int64_t>(100) : parse_id(limit);
  if (!before_id || !limit_n || *limit_n > 1000) {
    return reply_error(call, Status(ErrorCode::kInvalidArgument,
                                    "before and limit are numbers (limit 1 to 1000)"));
  }
  query.before_id = *before_id;
  query.limit = static_cast<int>(*limit_n);
  auto events = deps_.auth_store->list_audit(query);
  if (!events) {
    return reply_error(call, events.error());
  }
  json list = json::array();
  for (const auto& e : *events) {
    list.push_back({{"id", e.id},
                    {"at_ms", e.at_ms},
                    {"event", e.event},
                    {"actor", e.actor},
                    {"subject", e.subject},
                    {"address", e.address},
                    {"outcome", e.outcome},
                    {"detail", json::parse(e.detail, nullptr, false)}});
  }
  reply_json(call, http::status::ok, {{"events", list}});
}

void Api::admin_stats(Call& call) {
  auto users = deps_.store->list_users();
  auto counts = deps_.auth_store->audit_counts(auth_.now_ms() - 24 * 3600 * 1000);
  if (!users || !counts) {
    return reply_error(call, !users ? users.error() : counts.error());
  }
  int disabled = 0;
  int faces = 0;
  for (const auto& u : *users) {
    disabled += u.disabled ? 1 : 0;
    faces += u.template_count;
  }
  json last_day = json::object();
  for (const auto& [key, n] : *counts) {
    last_day[key] = n;
  }
  auto population = pool_.any_service().population_status(/*refresh=*/false);
  if (!population) {
    return reply_error(call, population.error());
  }
  reply_json(call, http::status::ok,
             {{"users", users->size()},
              {"disabled", disabled},
              {"faces", faces},
              {"last_24h", last_day},
              {"workers", pool_.size()},
              {"workers_busy", pool_.busy()},
              {"flows_open", enrollments_.size() + logins_.size()},
              {"recognition", population_json(*population)}});
}

}  // namespace facelogin::server
