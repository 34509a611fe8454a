// The immutable configuration snapshot.
//
// load() builds a whole Config from one TOML file (and the auth file it names) or returns
// an error naming file, line and reason; never a partial snapshot. The control thread
// publishes a new snapshot on reload; the data path only reads snapshots and keeps the one
// it started a connection with for as long as that connection needs it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pgplex/config/hba.h"
#include "pgplex/config/server_tls.h"
#include "pgplex/tls/session.h"

namespace pgplex::config {

enum class PoolMode : uint8_t { Session, Transaction, Statement };
// Hba: the method is the first matching line of auth_hba_file's (config/hba.h).
enum class AuthType : uint8_t { Trust, Md5, ScramSha256, Hba };

const char* to_string(PoolMode mode);
const char* to_string(AuthType type);

// A resolved socket address: TCP (IPv4/IPv6) or a Unix socket
// ("<directory>/.s.PGSQL.<port>" when host starts with '/', as libpq does).
struct Endpoint {
    std::string host;
    uint16_t port = 5432;
    sockaddr_storage address{};
    socklen_t address_bytes = 0;

    bool is_unix() const { return !host.empty() && host[0] == '/'; }
    std::string to_string() const;  // "host:port" or "/dir/.s.PGSQL.port"
    // The resolved address as numbers, "10.0.0.1:5432" or "[::1]:5432"; to_string() for a
    // Unix socket.
    std::string numeric() const;
};

// A socket address as Endpoint::numeric() writes it; empty for other families.
std::string numeric_address(const sockaddr_storage& address);

// [clusters.NAME.node_options."host:port"]: what the config says of a node. Its role is
// never configured: the monitor reads it from the node.
struct NodeOptions {
    bool offline = false;        // a dedicated offline instance (Pigsty's pg_role = offline)
    bool offline_query = false;  // a replica that also takes offline queries (pg_offline_query)
    int weight = 100;            // 0..256, as HAProxy's; 0 takes no new work
    // Server connections to the node over all its pools, shared by every appliance of the
    // site ([gossip]: each takes a share, pool/budget.h); 0: no limit.
    int max_db_connections = 0;
};

struct Node {
    std::string name;  // "host:port" as written in nodes
    Endpoint endpoint;
    NodeOptions options;
    // Its node_options' server TLS settings over its cluster's over [pgplex]'s; never null.
    std::shared_ptr<const ServerTls> server_tls;
};

enum class Dest : uint8_t { Pool, Direct };
enum class Balance : uint8_t { RoundRobin, LeastConn, Load };

const char* to_string(Dest dest);
const char* to_string(Balance balance);

// [clusters.C.services.NAME]: a listener that reaches the nodes its selector picks.
struct Service {
    std::string name;
    std::string cluster;
    uint32_t line = 0;
    std::vector<Endpoint> listen;  // port on host (or on every TCP host of [pgplex] listen)
    std::string selector;          // cluster/topology.h Selector text
    std::string backup;            // likewise; "" for none
    Dest dest = Dest::Pool;
    Balance balance = Balance::RoundRobin;
    int64_t max_lag_ms = -1;     // -1: no limit
    int64_t max_lag_bytes = -1;  // -1: no limit
    int maxconn = 0;             // per node: servers (direct) or leases (pool) at once; 0 none
    int maxqueue = 0;            // clients waiting for this service at once; 0: no limit
    int weight = 100;            // default weight of its nodes (node_options.weight wins)
    int64_t slowstart_ms = 0;    // a node that comes up ramps from 0 to its weight over this
};

// The services with a meaning of their own (Pigsty's, reference/003), in terms of the roles
// the monitors read: what a service of that name selects when its table names no selector,
// and what a routed client's route=NAME selects.
struct KnownService {
    std::string_view name;
    uint16_t port;  // the Pigsty default; 0: not one of the four defaults
    std::string_view selector;
    std::string_view backup;
    Dest dest;
};

// Pigsty's services (reference/003), in terms of the roles the monitors read.
inline constexpr KnownService known_services[] = {
    {"primary", 5433, "primary", "", Dest::Pool},
    {"replica", 5434, "replica && !offline && !delayed", "primary || (replica && offline)",
     Dest::Pool},
    {"default", 5436, "primary", "", Dest::Direct},
    {"offline", 5438, "replica && (offline || offline_query) && !delayed",
     "replica && !offline && !offline_query && !delayed", Dest::Direct},
    {"standby", 0, "sync", "primary", Dest::Pool},
    {"delayed", 0, "delayed", "", Dest::Pool},
};

// The entry of that name, or null.
const KnownService* known_service(std::string_view name);

// Who promotes a replica when a cluster's primary fails.
enum class Failover : uint8_t {
    Follow,   // an HA manager or an operator promotes; the monitors follow
    Promote,  // pgplex promotes the most advanced healthy replica itself
};
const char* to_string(Failover failover);

struct Cluster {
    std::string name;
    uint32_t line = 0;
    std::vector<Node> nodes;
    std::string monitor_user = "postgres";
    std::string monitor_password;  // empty: none (trust, peer) or from the auth file
    std::string monitor_dbname = "postgres";
    int64_t inter_ms = 1'000;          // between checks of a node that is up and steady
    int64_t fastinter_ms = 1'000;      // ... that is changing (counting rise or fall)
    int64_t downinter_ms = 1'000;      // ... that is down
    int rise = 2;                      // good checks in a row before a down node is up
    int fall = 3;                      // failed checks in a row before an up node is down
    int64_t check_timeout_ms = 2'000;  // one check: connect, log in and query
    int64_t max_lag_ms = -1;           // routed reads: replicas further behind leave rotation
    int64_t max_lag_bytes = -1;
    uint16_t patroni_port = 0;  // 0: health from the monitor; else Patroni's REST API
    // "follow": someone else (Patroni, an operator) promotes and pgplex follows; "promote":
    // pgplex promotes a replica itself when the primary is down (cluster/derive.h).
    Failover failover = Failover::Follow;
    // A replica further than this behind the old primary's last known LSN is never promoted
    // (Patroni's maximum_lag_on_failover, and its default).
    int64_t max_failover_lag_bytes = int64_t(1) << 20;
    // SWITCHOVER waits this long for the old primary's transactions to finish, then proceeds.
    int64_t switchover_timeout_ms = 10'000;
    // How long a transaction that needs the primary waits while the cluster has none (or a
    // switchover holds writes); -1: [pgplex]'s failover_wait_timeout.
    int64_t failover_wait_timeout_ms = -1;
    std::vector<Service> services;  // the four Pigsty defaults when none are configured

    const Node* find_node(std::string_view node_name) const;
};

// [[rules]]: a statement matching pattern (PCRE2), from a client matching the conditions,
// goes to route (or node).
struct Rule {
    uint32_t line = 0;
    std::string pattern;
    std::string route;  // primary | replica | standby | offline | delayed; or "" with node
    std::string node;   // "host:port" of a cluster node
    std::string user, database, application_name;  // "" matches any
};

// [[rewrites]]: every match of pattern is replaced (PCRE2 substitution) before sending.
struct Rewrite {
    uint32_t line = 0;
    std::string pattern;
    std::string replacement;
    std::string user, database, application_name;
};

// One [databases.NAME] table: what a client-visible database name maps to.
struct Alias {
    std::string name;              // the key; "*" is the fallback for any other name
    uint32_t line = 0;             // where it is defined, for messages
    Endpoint server;               // when cluster is empty
    std::string cluster;           // [clusters.X] this alias routes over, per statement; or empty
    bool read_your_writes = true;  // routed reads wait for the client's last commit
    std::string default_route = "primary";  // statements no other level routes
    std::string dbname;                     // empty: the client's database name
    std::string user;                       // empty: the client's user name
    std::string password;                   // empty: from the auth file
    // Sent in the server's StartupMessage, in this order: application_name,
    // client_encoding, DateStyle, TimeZone, options (names as the server expects them).
    std::vector<std::pair<std::string, std::string>> startup_parameters;
    // Its server TLS settings over [pgplex]'s (an alias that names a cluster may set none:
    // its nodes' apply); never null.
    std::shared_ptr<const ServerTls> server_tls;
    int pool_size = -1;          // -1: [pgplex] default_pool_size
    int reserve_pool_size = -1;  // -1: [pgplex] reserve_pool_size
    int min_pool_size = -1;      // -1: [pgplex] min_pool_size
    // PgBouncer's per-database limits: server connections over all the alias's pools, and
    // clients logged in to it; -1: [pgplex]'s; 0: no limit.
    int max_db_connections = -1;
    int max_db_client_connections = -1;
    bool pool_mode_set = false;
    PoolMode pool_mode = PoolMode::Session;  // valid when pool_mode_set
    int pin_on_session_state = -1;           // -1: [pgplex]'s; else 0 or 1
    std::string auth_user;                   // empty: [pgplex] auth_user
    std::string auth_dbname;                 // empty: [pgplex] auth_dbname, else the alias's dbname
};

// One [users.NAME] table: settings for the pools whose server user is NAME (PgBouncer's
// [users] section, which applies to the user a pool logs in as: the alias's user when it
// names one, else the client's).
struct UserSettings {
    std::string name;
    uint32_t line = 0;  // where it is defined, for messages
    bool pool_mode_set = false;
    PoolMode pool_mode = PoolMode::Session;  // valid when pool_mode_set
    // PgBouncer's per-user limits: server connections that log in as NAME, and clients that
    // log in as NAME; -1: [pgplex]'s; 0: no limit.
    int max_user_connections = -1;
    int max_user_client_connections = -1;
};

// The default auth_query: the function of `pgplex --print-schema` (SECURITY DEFINER, its
// search_path pinned), which returns no secret once VALID UNTIL has passed.
inline constexpr std::string_view default_auth_query =
    "SELECT uname, phash, valid_until FROM pgplex.user_lookup($1)";

struct Listen {
    Endpoint endpoint;  // host:port to bind
};

// [gossip]: the other pgplex appliances of this site and how this one talks to them
// (gossip/engine.h, gossip/agent.h). Absent: this appliance decides alone. Addresses are kept
// numeric ("10.0.0.11:7946", "[::1]:7946"): an appliance is known by the address it sends
// from, so the configured names must compare equal to what recvfrom(2) reports.
struct Gossip {
    bool enabled = false;
    Endpoint listen;
    std::string self;                     // listen, numeric
    std::vector<Endpoint> peers;          // the other configured appliances
    std::vector<std::string> peer_names;  // numeric, in the order of peers
    std::string key_file;                 // resolved relative to the config file
    std::vector<uint8_t> key;  // its contents (trailing white space dropped), >= 32 bytes
    int64_t probe_interval_ms = 500;
    int64_t probe_timeout_ms = 200;
    int64_t suspect_timeout_ms = 2'000;
    int64_t lease_ms = 1'000;
    // Whether reads go on while this appliance cannot reach a majority (writes never do).
    bool minority_reads = true;
    // Every configured appliance (self and peers), numeric and sorted: the same list on each.
    // An appliance's place in it is the top bits of the BackendKeyData pid of its clients, so
    // a CancelRequest that reaches another appliance is forwarded to it by gossip.
    std::vector<std::string> appliances;
    uint32_t index = 0;  // this appliance's place in appliances; 0 without [gossip]

    bool same_members(const Gossip& other) const {
        return enabled == other.enabled && self == other.self && peer_names == other.peer_names;
    }
};

// [dcs]: an etcd (v3, its HTTP/JSON gateway) that holds the appliances' epochs and primaries
// (dcs/store.h, dcs/etcd.h). Absent: the appliances' own quorum decides ([gossip]). The
// TLS and auth settings are named as Patroni's [etcd3] section names them.
struct Dcs {
    bool enabled = false;
    std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", "https://...": tried in turn
    std::string cacert;                  // PEM file to verify the etcd server; "": system CAs
    std::string cert;                    // client certificate (PEM), with key; "": none
    std::string key;                     // its private key (PEM)
    std::string username;                // etcd auth user; "": no authentication
    std::string password;                // from password or password_file (read at load)
    std::string prefix = "/pgplex";      // every key pgplex writes starts with it
    int64_t ttl_s = 10;                  // lease seconds: how long a decision read stays confirmed

    bool operator==(const Dcs&) const = default;
};

struct Config {
    std::string path;  // the file this was loaded from

    std::vector<Listen> listen;  // listen = ["127.0.0.1:6432", ...]
    // The admin HTTP port (/metrics, /health; metrics/server.h); "" (the default): none.
    std::string metrics_listen;
    Endpoint metrics_endpoint;  // metrics_listen resolved
    // unix_socket_dir: a Unix socket "<dir>/.s.PGSQL.<port>" for each port of a TCP listen
    // address and of each service listening on them (PgBouncer's unix_socket_dir); "" for none.
    // Its sockets are already in listen and Service::listen once loaded.
    std::string unix_socket_dir;
    // pgplex --takeover (takeover.h): where this pgplex offers to be taken over; "" for
    // "<unix_socket_dir>/.s.PGPLEX.<port>" (none without unix_socket_dir).
    std::string takeover_socket;
    int unix_socket_mode = 0777;  // the permissions of those sockets (and of listen's own)
    Gossip gossip;
    Dcs dcs;
    int workers = 0;  // 0: one per online CPU
    int max_client_conn = 10000;
    // PgBouncer's limits (pool/budget.h), each 0 for none: server connections per database
    // (alias) over all its pools and per server user, and clients logged in per database
    // and per user. [databases.X] and [users.NAME] may set their own.
    int max_db_connections = 0;
    int max_user_connections = 0;
    int max_db_client_connections = 0;
    int max_user_client_connections = 0;
    PoolMode pool_mode = PoolMode::Session;
    int default_pool_size = 20;
    // Transaction pooling: named statements each server keeps prepared (least recently
    // used go first); 0 passes named statements through unchanged, as PgBouncer does.
    int max_prepared_statements = 200;
    // Transaction pooling: a client that holds session state a server cannot lend on
    // (session advisory locks, WITH HOLD cursors, temporary tables) keeps its server until
    // it lets go of it (true), or such statements get 0A000 (false).
    bool pin_on_session_state = true;
    int min_pool_size = 0;                    // servers each pool keeps open, used or not
    int reserve_pool_size = 0;                // extra servers for a pool whose clients wait
    int64_t reserve_pool_timeout_ms = 5'000;  // ... this long; 0: the reserve is never used
    AuthType auth_type = AuthType::ScramSha256;
    std::string auth_file;                // resolved relative to the config file
    std::string auth_hba_file;            // auth_type = "hba": resolved relative to the config file
    std::shared_ptr<const HbaRules> hba;  // its rules; null unless auth_type = "hba"
    // user → secret as written in the auth file: plain text, "md5<32 hex>" or
    // "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".
    std::unordered_map<std::string, std::string> users;
    // auth_query (pool/auth_lookup.h): users not in the auth file are looked up on the
    // server as auth_user (whose secret is in the auth file), in auth_dbname (empty: the
    // alias's database); results are kept auth_cache_ttl (0: not kept).
    std::string auth_user;
    std::string auth_query{default_auth_query};
    std::string auth_dbname;
    int64_t auth_cache_ttl_ms = 5'000;
    std::string server_reset_query = "DISCARD ALL";
    int64_t server_idle_timeout_ms = 600'000;
    int64_t server_lifetime_ms = 3'600'000;
    int64_t query_wait_timeout_ms = 120'000;
    // A transaction that needs a cluster's primary waits this long while there is none (a
    // failover) or a switchover holds writes, then is answered 57P03; 0: answered at once.
    int64_t failover_wait_timeout_ms = 30'000;
    // Where the monitor keeps each cluster's epoch, last primary and fences across restarts
    // (cluster/saved_state.h), resolved relative to the config file; empty: in memory only.
    std::string state_file;
    int64_t client_login_timeout_ms = 60'000;
    // A wrong password (or unknown user) is answered this much later, its connection held
    // meanwhile: a password guesser gets one guess per connection per delay.
    int64_t auth_failure_delay_ms = 500;
    // Failed logins from one address in a minute after which its logins are refused until
    // the minute is over (28000); 0: no limit.
    int auth_failure_limit = 20;
    // Per client address: new connections a second, and logins in progress at once, past
    // which connections are refused (53300); 0: no limit.
    int client_connect_rate_limit = 0;
    // A client that takes none of its queued output for this long is closed (it holds its
    // server meanwhile); 0: never.
    int64_t client_stall_timeout_ms = 300'000;
    int client_login_limit = 0;
    int64_t server_connect_timeout_ms = 15'000;
    int64_t shutdown_timeout_ms = 30'000;
    bool log_connections = true;
    bool log_disconnections = true;
    std::string log_level = "info";  // error | warning | notice | info | debug
    uint32_t buffer_size = 16384;    // bytes per provided buffer
    uint32_t buffer_count = 2048;    // provided buffers per worker (power of two)

    // TLS toward clients (PgBouncer's client_tls_* settings); files resolved relative to the
    // config file. The context is built at load, so a reload with a bad certificate is
    // refused and the running daemon keeps the old one; null when client_tls_sslmode is
    // "disable".
    tls::Settings client_tls;
    std::shared_ptr<const tls::Context> client_tls_context;
    // TLS toward servers (PgBouncer's server_tls_*, server_channel_binding,
    // server_tls_negotiation) as [pgplex] sets it, for pools, LISTEN connections, cancels and
    // monitors that no alias, cluster or node sets otherwise (server_tls.h); never null.
    std::shared_ptr<const ServerTls> server_tls = std::make_shared<const ServerTls>();
    // Every distinct set of the file, each with its context built once.
    std::vector<std::shared_ptr<const ServerTls>> server_tls_sets;

    std::vector<std::string> admin_users;          // may use the pgplex database
    std::vector<std::string> stats_users;          // may use it for SHOW commands only
    std::vector<std::string> read_only_functions;  // besides the built-in list
    std::vector<Cluster> clusters;
    std::vector<Rule> rules;
    std::vector<Rewrite> rewrites;

    std::vector<Alias> aliases;                                   // every [databases.X] except "*"
    std::unique_ptr<Alias> fallback;                              // [databases."*"], if present
    std::unordered_map<std::string, UserSettings> user_settings;  // [users.NAME], by name

    // The alias for a client's database name: an exact match, else the fallback, else null.
    const Alias* find_alias(std::string_view name) const;
    const Cluster* find_cluster(std::string_view name) const;
    int pool_size(const Alias& alias) const {
        return alias.pool_size >= 0 ? alias.pool_size : default_pool_size;
    }
    // Capped at the pool size, as PgBouncer does.
    int min_pool_size_of(const Alias& alias) const {
        int min = alias.min_pool_size >= 0 ? alias.min_pool_size : min_pool_size;
        return min < pool_size(alias) ? min : pool_size(alias);
    }
    int64_t failover_wait_timeout_of(const Cluster* cluster) const {
        return cluster != nullptr && cluster->failover_wait_timeout_ms >= 0
                   ? cluster->failover_wait_timeout_ms
                   : failover_wait_timeout_ms;
    }
    // The limits in force for a database (alias) name and a user name; 0: none.
    int max_db_connections_of(std::string_view database) const;
    int max_db_client_connections_of(std::string_view database) const;
    int max_user_connections_of(const std::string& user) const;
    int max_user_client_connections_of(const std::string& user) const;
    int reserve_pool_size_of(const Alias& alias) const {
        return alias.reserve_pool_size >= 0 ? alias.reserve_pool_size : reserve_pool_size;
    }
    // The pool mode of a client of `alias` logged in as `client_user`: [users.NAME] of the
    // user the pool logs in as, else the alias's, else [pgplex]'s, as PgBouncer decides.
    bool pin_on_session_state_of(const Alias& alias) const {
        return alias.pin_on_session_state >= 0 ? alias.pin_on_session_state == 1
                                               : pin_on_session_state;
    }
    const std::string& auth_user_of(const Alias& alias) const {
        return alias.auth_user.empty() ? auth_user : alias.auth_user;
    }
    PoolMode pool_mode_of(const Alias& alias, const std::string& client_user) const {
        auto user = user_settings.find(alias.user.empty() ? client_user : alias.user);
        if (user != user_settings.end() && user->second.pool_mode_set)
            return user->second.pool_mode;
        return alias.pool_mode_set ? alias.pool_mode : pool_mode;
    }
};

// Error text is "file:line: reason" (or "file: reason" when no line applies).
struct LoadResult {
    std::shared_ptr<const Config> config;  // null on error
    std::string error;
};

// Reads and validates the file (and its auth file). Resolves host names. Never throws.
LoadResult load(const std::string& path);

// SET from the management console (admin/console.h): `key = value` lines for [pgplex], TOML,
// laid over the file by every load() (each SET's reload, SIGHUP) until the console's RELOAD
// clears them and the file alone counts again. check_override() says whether the key may
// change live and the value would be accepted in the file (reason when not); set_override()
// keeps it (replacing an earlier SET of the key).
bool check_override(std::string_view key, std::string_view value, std::string& reason);
void set_override(std::string_view key, std::string_view value);
void clear_overrides();

// Parses a duration as written in the config: "250ms", "10s", "5m", "1h", or a bare
// integer of seconds. Returns false on anything else.
bool parse_duration_ms(std::string_view text, int64_t& out_ms);

// Parses "host:port", "[v6]:port" or "/unix/dir:port" into an Endpoint (resolving the
// host). On failure returns false and sets reason.
bool parse_endpoint(std::string_view text, Endpoint& out, std::string& reason);
bool resolve_endpoint(std::string_view host, uint16_t port, Endpoint& out, std::string& reason);

}  // namespace pgplex::config
