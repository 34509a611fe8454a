// See handover_state.h.
#include "pgplex/client/handover_state.h"

#include <memory>

#include "pgplex/base/codec.h"
#include "pgplex/base/limits.h"

namespace pgplex::client {

namespace {

constexpr uint32_t format = 1;
constexpr size_t name_max = 1024;
constexpr size_t text_max = 16u << 20;
constexpr uint32_t items_max = 1u << 20;

void put_settings(base::ByteWriter& out, const std::vector<pool::Setting>& settings, bool nested) {
    out.u32(uint32_t(settings.size()));
    for (const pool::Setting& setting : settings) {
        out.bytes(setting.name);
        out.bytes(setting.sql);
        out.bytes(setting.value);
        bool context = nested && setting.context != nullptr;
        out.boolean(context);
        if (context) put_settings(out, *setting.context, false);
    }
}

bool get_settings(base::ByteReader& in, std::vector<pool::Setting>& settings, bool nested) {
    uint32_t count = in.count(items_max, 13);
    settings.clear();
    for (uint32_t i = 0; i < count && in.ok(); ++i) {
        pool::Setting setting;
        setting.name = in.bytes(name_max);
        setting.sql = in.bytes(text_max);
        setting.value = in.bytes(text_max);
        if (in.boolean()) {
            if (!nested) return false;
            std::vector<pool::Setting> context;
            if (!get_settings(in, context, false)) return false;
            setting.context =
                std::make_shared<const std::vector<pool::Setting>>(std::move(context));
        }
        settings.push_back(std::move(setting));
    }
    return in.ok();
}

}  // namespace

std::string encode(const HandedClient& client) {
    base::ByteWriter out;
    out.u32(format);
    out.bytes(client.cluster);
    out.bytes(client.service);
    out.boolean(client.local);
    out.i64(client.connected);
    out.boolean(client.addresses_known);
    out.raw(client.peer.data(), client.peer.size());
    out.raw(client.local_address.data(), client.local_address.size());
    out.u32(client.peer_uid);
    out.u32(client.pid);
    out.u32(client.cancel_key);
    out.bytes(client.user);
    out.bytes(client.database);
    out.u8(client.mode);
    put_settings(out, client.startup, false);
    out.boolean(client.has_settings);
    put_settings(out, client.settings, false);
    put_settings(out, client.sql_prepared, true);
    out.u8(client.lost);
    out.bytes(client.lost_where);
    out.bytes(client.secret);
    out.boolean(client.scram_keys);
    out.raw(client.scram_client_key.data(), client.scram_client_key.size());
    out.raw(client.scram_server_key.data(), client.scram_server_key.size());
    out.u8(client.intent);
    out.u64(client.ryw_lsn);
    out.u32(uint32_t(client.statements.size()));
    for (const auto& [name, tail] : client.statements) {
        out.bytes(name);
        out.bytes(tail);
    }
    out.boolean(client.has_unnamed);
    out.bytes(client.unnamed);
    out.u32(uint32_t(client.parses.size()));
    for (const auto& [name, body] : client.parses) {
        out.bytes(name);
        out.bytes(body);
    }
    out.bytes(client.input);
    return out.take();
}

bool decode(std::string_view bytes, HandedClient& client) {
    base::ByteReader in(bytes);
    client = HandedClient{};
    if (in.u32() != format) return false;
    client.cluster = in.bytes(name_max);
    client.service = in.bytes(name_max);
    client.local = in.boolean();
    client.connected = in.i64();
    client.addresses_known = in.boolean();
    in.raw(client.peer.data(), client.peer.size());
    in.raw(client.local_address.data(), client.local_address.size());
    client.peer_uid = in.u32();
    client.pid = in.u32();
    client.cancel_key = in.u32();
    client.user = in.bytes(limits::name_bytes_max);
    client.database = in.bytes(limits::name_bytes_max);
    client.mode = in.u8();
    if (!get_settings(in, client.startup, false)) return false;
    client.has_settings = in.boolean();
    if (!get_settings(in, client.settings, false)) return false;
    if (!get_settings(in, client.sql_prepared, true)) return false;
    client.lost = in.u8();
    client.lost_where = in.bytes(text_max);
    client.secret = in.bytes(text_max);
    client.scram_keys = in.boolean();
    in.raw(client.scram_client_key.data(), client.scram_client_key.size());
    in.raw(client.scram_server_key.data(), client.scram_server_key.size());
    client.intent = in.u8();
    client.ryw_lsn = in.u64();
    uint32_t count = in.count(items_max, 8);
    for (uint32_t i = 0; i < count && in.ok(); ++i) {
        std::string name = in.bytes(name_max);
        std::string tail = in.bytes(text_max);
        client.statements.emplace_back(std::move(name), std::move(tail));
    }
    client.has_unnamed = in.boolean();
    client.unnamed = in.bytes(text_max);
    count = in.count(items_max, 8);
    for (uint32_t i = 0; i < count && in.ok(); ++i) {
        std::string name = in.bytes(name_max);
        std::string body = in.bytes(text_max);
        client.parses.emplace_back(std::move(name), std::move(body));
    }
    client.input = in.bytes(text_max);
    return in.at_end() && client.mode <= 2 && client.lost <= 2 && client.intent <= 2;
}

}  // namespace pgplex::client
