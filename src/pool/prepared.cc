// Interned statements and the per-server LRU of what is prepared (pool/prepared.h).
#include "pgplex/pool/prepared.h"

#include <xxhash.h>

#include "pgplex/base/assert.h"

namespace pgplex::pool {

void format_server_name(const StatementId& id, char (&out)[server_name_bytes]) {
    static const char digits[] = "0123456789abcdef";
    static const char prefix[] = "_pgplex_";
    uint32_t at = 0;
    for (const char* p = prefix; *p != '\0'; ++p) out[at++] = *p;
    for (uint64_t half : {id.high, id.low})
        for (int shift = 60; shift >= 0; shift -= 4) out[at++] = digits[(half >> shift) & 15];
    out[at] = '\0';
    PGPLEX_ASSERT(at + 1 == server_name_bytes);
}

namespace {

StatementId id_of(std::string_view parse_tail) {
    XXH128_hash_t hash = XXH3_128bits(parse_tail.data(), parse_tail.size());
    return {hash.low64, hash.high64};
}

}  // namespace

Statement* StatementCache::find(std::string_view parse_tail) const {
    auto found = statements_.find(id_of(parse_tail));
    return found == statements_.end() ? nullptr : found->second.get();
}

Statement* StatementCache::intern(std::string_view parse_tail) {
    StatementId id = id_of(parse_tail);
    auto [it, inserted] = statements_.try_emplace(id);
    if (inserted) {
        it->second = std::make_unique<Statement>();
        it->second->id = id;
        it->second->parse_tail.assign(parse_tail);
        format_server_name(id, it->second->server_name);
    }
    ++it->second->refs;
    return it->second.get();
}

void StatementCache::unref(Statement* statement) {
    PGPLEX_ASSERT(statement->refs > 0);
    if (--statement->refs == 0) statements_.erase(statement->id);
}

void ServerStatements::touch(const StatementId& id, uint32_t epoch) {
    auto found = index_.find(id);
    if (found == index_.end()) return;
    found->second->epoch = epoch;
    order_.splice(order_.begin(), order_, found->second);
}

void ServerStatements::add(const StatementId& id, uint32_t epoch) {
    if (contains(id)) {
        touch(id, epoch);
        return;
    }
    order_.push_front({id, epoch});
    index_.emplace(id, order_.begin());
}

void ServerStatements::remove(const StatementId& id) {
    auto found = index_.find(id);
    if (found == index_.end()) return;
    order_.erase(found->second);
    index_.erase(found);
}

void ServerStatements::clear() {
    order_.clear();
    index_.clear();
}

bool ServerStatements::eviction_candidate(size_t max, uint32_t epoch, StatementId& out) const {
    if (index_.size() < max || order_.empty()) return false;
    const Entry& oldest = order_.back();
    if (oldest.epoch == epoch) return false;  // everything is in use by this lending
    out = oldest.id;
    return true;
}

}  // namespace pgplex::pool
