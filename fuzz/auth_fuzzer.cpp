// libFuzzer target for the parsing of credentials and client addresses, below the router:
// Authenticator::authenticate (session tokens from a cookie or a bearer header), the CSRF value
// and constant_time_equal, API-key lookup by hash, and server::client_address
// (X-Forwarded-For behind trusted proxies).
//
// Input: fields separated by a NUL byte:
//   0  a token, as a client would send it ("~N" at its start: live session N's token, so the
//      fuzzer mutates around a valid one)
//   1  the X-CSRF-Token value
//   2  an API key ("~N": key N)
//   3  the TCP peer
//   4  trusted proxies, comma-separated (normalised as Server::start does; bad ones dropped)
//   5+ X-Forwarded-For header fields, one per field
//
// Contracts (include/facelogin/auth.h, src/server/http.h):
// - authenticate succeeds exactly for the tokens of live sessions, and names their user;
//   everything else is kUnauthenticated, never another error.
// - csrf_for is 64 lowercase hex digits, a function of the token, never the token itself; the
//   CSRF check (constant_time_equal) passes exactly when the value equals it.
// - constant_time_equal(a, b) == (a == b); token_hash is 32 bytes, equal for equal inputs.
// - find_api_key(token_hash(key)) finds exactly the issued keys.
// - client_address: the peer unless it is a trusted proxy; then the right-most
//   X-Forwarded-For hop that is not a trusted proxy, normalised, if it is an IP address; else the
//   peer. Checked against an independent model of that rule.
//
// Run: build-fuzz/fuzz/auth_fuzzer CORPUS -dict=fuzz/auth.dict

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "facelogin/auth.h"
#include "facelogin/auth_store.h"
#include "facelogin/store.h"
#include "fuzz_util.h"
#include "server/http.h"

namespace {

namespace fz = facelogin::fuzz;
using facelogin::ErrorCode;

template <typename T>
T must(facelogin::Result<T> result) {
  if (!result) {
    std::fprintf(stderr, "auth_fuzzer setup: %s\n", result.error().to_string().c_str());
    std::exit(1);
  }
  return std::move(*result);
}

struct Fixture {
  std::unique_ptr<facelogin::Store> store;
  std::unique_ptr<facelogin::AuthStore> auth_store;
  std::unique_ptr<facelogin::Authenticator> auth;
  std::vector<std::pair<std::string, std::string>> sessions;  // token, user
  std::vector<std::string> dead_tokens;                       // revoked or of a disabled user
  std::vector<std::string> keys;
};

const Fixture& fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture();
    const auto db = fz::scratch_dir() / "auth.db";
    facelogin::SqliteStoreOptions options;
    options.key = std::string(32, '\x21');
    fx->store = must(facelogin::open_sqlite_store(db, options));
    fx->auth_store = must(facelogin::open_sqlite_auth_store(db));
    fx->auth = std::make_unique<facelogin::Authenticator>(*fx->store, *fx->auth_store);
    facelogin::FaceTemplate t;
    t.model_id = "fuzz";
    t.embedding = {0.6f, 0.8f};
    for (const char* name : {"alice", "bob", "carol"}) {
      must(fx->store->create_user(name, {t}));
    }
    for (const auto& [user, kind] : std::vector<std::pair<std::string, std::string>>{
             {"alice", "cookie"}, {"alice", "bearer"}, {"bob", "cookie"}}) {
      auto issued = must(fx->auth->issue_session(user, kind, "192.0.2.1", "fuzz"));
      fx->sessions.emplace_back(issued.token, user);
    }
    // A revoked session, and one of an account that is then disabled.
    auto revoked = must(fx->auth->issue_session("alice", "cookie", "192.0.2.1", "fuzz"));
    if (!fx->auth->logout(revoked.token).ok()) {
      std::exit(1);
    }
    fx->dead_tokens.push_back(revoked.token);
    auto disabled = must(fx->auth->issue_session("carol", "bearer", "192.0.2.1", "fuzz"));
    if (!fx->store->set_disabled("carol", true).ok()) {
      std::exit(1);
    }
    fx->dead_tokens.push_back(disabled.token);
    for (const char* name : {"app", "admin-tool"}) {
      const std::string key = must(facelogin::new_api_key());
      facelogin::ApiKeyRecord record;
      record.name = name;
      record.scopes = {"login"};
      must(fx->auth_store->create_api_key(record, facelogin::token_hash(key)));
      fx->keys.push_back(key);
    }
    return fx;
  }();
  return *f;
}

// "~N..." -> the N-th of `known` followed by the rest; anything else unchanged.
std::string expand(std::string_view field, const std::vector<std::string>& known) {
  if (field.size() >= 2 && field[0] == '~' && !known.empty()) {
    return known[static_cast<unsigned char>(field[1]) % known.size()] + std::string(field.substr(2));
  }
  return std::string(field);
}

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

// The rule of client_address, written again from its contract.
std::string expected_client(const std::vector<std::string>& xff_fields, const std::string& peer,
                            const std::vector<std::string>& trusted) {
  const auto is_trusted = [&](const std::string& a) {
    return std::find(trusted.begin(), trusted.end(), a) != trusted.end();
  };
  if (!is_trusted(peer)) {
    return peer;
  }
  std::vector<std::string> hops;
  for (const std::string& field : xff_fields) {
    std::vector<std::string_view> parts = fz::split(field, ",");
    if (parts.back().empty()) {
      parts.pop_back();  // "a," names one hop; an empty field none
    }
    for (std::string_view hop : parts) {
      while (!hop.empty() && hop.front() == ' ') hop.remove_prefix(1);
      while (!hop.empty() && hop.back() == ' ') hop.remove_suffix(1);
      hops.emplace_back(hop);
    }
  }
  // From the right: the first hop that is not a trusted proxy, compared and returned in its
  // parsed form without an IPv6 scope ("::2%eth0" is the proxy "::2"); garbage: the peer.
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(*it, ec);
    if (ec) {
      return peer;
    }
    if (address.is_v6()) {
      auto v6 = address.to_v6();
      v6.scope_id(0);
      address = v6;
    }
    if (is_trusted(address.to_string())) {
      continue;
    }
    return address.to_string();
  }
  return peer;
}

void check_tokens(const Fixture& fx, const std::string& token, const std::string& csrf_header) {
  auto session = fx.auth->authenticate(token);
  const auto live = std::find_if(fx.sessions.begin(), fx.sessions.end(),
                                 [&](const auto& s) { return s.first == token; });
  if (live != fx.sessions.end()) {
    FUZZ_REQUIRE(session.has_value(), token);
    FUZZ_REQUIRE(session->user.name == live->second && session->session.user == live->second,
                 token);
  } else {
    FUZZ_REQUIRE(!session.has_value(), token);
    FUZZ_REQUIRE(session.error().code() == ErrorCode::kUnauthenticated,
                 session.error().to_string());
  }

  const std::string csrf = facelogin::Authenticator::csrf_for(token);
  FUZZ_REQUIRE(csrf.size() == 64 && is_lower_hex(csrf), csrf);
  FUZZ_REQUIRE(csrf != token, token);
  FUZZ_REQUIRE(csrf == facelogin::Authenticator::csrf_for(token), token);
  // The check Api::handle makes for unsafe methods of cookie sessions.
  const bool passes = facelogin::constant_time_equal(csrf_header, csrf);
  FUZZ_REQUIRE(passes == (csrf_header == csrf), csrf_header);

  FUZZ_REQUIRE(facelogin::constant_time_equal(token, csrf_header) == (token == csrf_header), token);
  FUZZ_REQUIRE(facelogin::constant_time_equal(token, token), token);
  const std::string hash = facelogin::token_hash(token);
  FUZZ_REQUIRE(hash.size() == 32, token);
  FUZZ_REQUIRE(hash == facelogin::token_hash(std::string(token)), token);
  FUZZ_REQUIRE((hash == facelogin::token_hash(csrf_header)) == (token == csrf_header), token);
}

void check_api_key(const Fixture& fx, const std::string& key) {
  auto record = fx.auth_store->find_api_key(facelogin::token_hash(key));
  const bool issued = std::find(fx.keys.begin(), fx.keys.end(), key) != fx.keys.end();
  if (issued) {
    FUZZ_REQUIRE(record.has_value() && !record->revoked && record->has("login"), key);
  } else {
    FUZZ_REQUIRE(!record.has_value() && record.error().code() == ErrorCode::kNotFound, key);
  }
}

void check_client_address(const std::vector<std::string_view>& fields) {
  namespace http = boost::beast::http;
  const std::string peer(fields.size() > 3 ? fields[3] : "127.0.0.1");
  std::vector<std::string> trusted;
  if (fields.size() > 4) {
    for (std::string_view proxy : fz::split(fields[4], ",")) {
      boost::system::error_code ec;
      const auto address = boost::asio::ip::make_address(std::string(proxy), ec);
      if (!ec) {
        trusted.push_back(address.to_string());  // the form Server::start keeps
      }
    }
  }
  facelogin::server::Request request(http::verb::get, "/api/v1/session", 11);
  std::vector<std::string> xff;
  for (std::size_t i = 5; i < fields.size() && i < 13; ++i) {
    // Header values cannot hold CR or LF (Beast refuses them on the wire).
    if (fields[i].find_first_of("\r\n") != std::string_view::npos) {
      continue;
    }
    request.insert(i % 2 == 0 ? "X-Forwarded-For" : "x-forwarded-for", fields[i]);
  }
  // The values as stored (Beast trims the whitespace around a value, as its parser does).
  for (const auto& field : request) {
    if (field.name_string() == "X-Forwarded-For" || field.name_string() == "x-forwarded-for") {
      xff.emplace_back(field.value());
    }
  }
  const std::string client = facelogin::server::client_address(request, peer, trusted);
  const std::string expected = expected_client(xff, peer, trusted);
  FUZZ_REQUIRE(client == expected, "client_address gave '" + client + "', the rule '" + expected + "'");
  if (client != peer) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(client, ec);
    FUZZ_REQUIRE(!ec && address.to_string() == client, client);
    FUZZ_REQUIRE(std::find(trusted.begin(), trusted.end(), client) == trusted.end(), client);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Fixture& fx = fixture();
  const std::vector<std::string_view> fields =
      fz::split(fz::as_text(data, size), std::string_view("\0", 1));
  std::vector<std::string> tokens;
  for (const auto& s : fx.sessions) {
    tokens.push_back(s.first);
  }
  tokens.insert(tokens.end(), fx.dead_tokens.begin(), fx.dead_tokens.end());
  const std::string token = expand(fields[0], tokens);
  const std::string csrf_header =
      fields.size() > 1 ? expand(fields[1], {facelogin::Authenticator::csrf_for(token)}) : "";
  check_tokens(fx, token, csrf_header);
  if (fields.size() > 2) {
    check_api_key(fx, expand(fields[2], fx.keys));
  }
  check_client_address(fields);
  return 0;
}
