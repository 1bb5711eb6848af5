// Dropping a throw-away PostgreSQL schema (tests, `facelogin loadtest`). Kept apart from the
// stores: it is the one operation that destroys data, and no server path calls it.

#include <fmt/format.h>
#include <libpq-fe.h>

#include <memory>

#include "facelogin/postgres_store.h"
#include "storage/pg_db.h"

namespace facelogin {

Status drop_postgres_schema(const PostgresOptions& options) {
  if (!storage::is_valid_schema_name(options.schema)) {
    return Status(ErrorCode::kInvalidArgument,
                  "a schema name is 1-63 letters, digits or '_', not starting with a digit");
  }
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(options.conninfo.c_str()),
                                                    &PQfinish);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Status(ErrorCode::kUnavailable,
                  fmt::format("cannot connect to PostgreSQL database {} on {}", PQdb(conn.get()),
                              PQhost(conn.get()) != nullptr ? PQhost(conn.get()) : "?"));
  }
  PQsetNoticeProcessor(conn.get(), [](void*, const char*) {}, nullptr);  // "drop cascades to ..."
  PQsetErrorVerbosity(conn.get(), PQERRORS_TERSE);
  const std::string sql = fmt::format("DROP SCHEMA IF EXISTS \"{}\" CASCADE", options.schema);
  std::unique_ptr<PGresult, decltype(&PQclear)> res(PQexec(conn.get(), sql.c_str()), &PQclear);
  if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    const char* primary = PQresultErrorField(res.get(), PG_DIAG_MESSAGE_PRIMARY);
    return Status(ErrorCode::kIoError, fmt::format("cannot drop schema {}: {}", options.schema,
                                                   primary != nullptr ? primary : "error"));
  }
  return Status::Ok();
}

}  // namespace facelogin
