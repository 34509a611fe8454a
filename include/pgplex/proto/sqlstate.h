// The SQLSTATE codes pgplex sends, named as in PostgreSQL's src/backend/utils/errcodes.txt.
#pragma once

namespace pgplex::sqlstate {

inline constexpr const char* connection_failure = "08006";
inline constexpr const char* protocol_violation = "08P01";
inline constexpr const char* sqlclient_unable_to_establish_sqlconnection = "08001";
inline constexpr const char* feature_not_supported = "0A000";
inline constexpr const char* invalid_authorization_specification = "28000";
inline constexpr const char* invalid_password = "28P01";
inline constexpr const char* invalid_catalog_name = "3D000";
inline constexpr const char* too_many_connections = "53300";
inline constexpr const char* admin_shutdown = "57P01";
inline constexpr const char* cannot_connect_now = "57P03";
inline constexpr const char* query_canceled = "57014";
inline constexpr const char* internal_error = "XX000";
inline constexpr const char* in_failed_sql_transaction = "25P02";
inline constexpr const char* duplicate_prepared_statement = "42P05";
inline constexpr const char* syntax_error = "42601";
inline constexpr const char* program_limit_exceeded = "54000";
inline constexpr const char* read_only_sql_transaction = "25006";
inline constexpr const char* invalid_parameter_value = "22023";
inline constexpr const char* insufficient_privilege = "42501";

}  // namespace pgplex::sqlstate
