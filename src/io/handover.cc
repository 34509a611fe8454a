// See handover.h.
#include "pgplex/io/handover.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pgplex/base/codec.h"

namespace pgplex::io {

namespace {

// kind (1), payload size (4), descriptor count (1), and a mark that says this is pgplex's.
constexpr uint32_t frame_mark = 0x504c5848;  // "HXLP"
constexpr size_t header_size = 10;

bool write_all(int socket, const char* data, size_t size, std::string& error) {
    while (size > 0) {
        ssize_t sent = ::send(socket, data, size, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) {
            error = strerror(errno);
            return false;
        }
        data += sent;
        size -= size_t(sent);
    }
    return true;
}

bool read_all(int socket, char* data, size_t size, std::string& error) {
    while (size > 0) {
        ssize_t got = ::recv(socket, data, size, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            error = got == 0 ? "closed" : strerror(errno);
            return false;
        }
        data += got;
        size -= size_t(got);
    }
    return true;
}

bool unix_address(const std::string& path, sockaddr_un& address, std::string& error) {
    address = sockaddr_un{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof address.sun_path) {
        error = "socket path \"" + path + "\" is empty or too long";
        return false;
    }
    memcpy(address.sun_path, path.data(), path.size());
    return true;
}

}  // namespace

bool send_frame(int socket, HandoverKind kind, std::string_view payload,
                const std::vector<int>& fds, std::string& error) {
    if (payload.size() > handover_payload_max || fds.size() > handover_fds_max) {
        error = "frame too large";
        return false;
    }
    base::ByteWriter header;
    header.u32(frame_mark);
    header.u8(uint8_t(kind));
    header.u32(uint32_t(payload.size()));
    header.u8(uint8_t(fds.size()));
    iovec vector{const_cast<char*>(header.data().data()), header.data().size()};
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * handover_fds_max)] = {};
    if (!fds.empty()) {
        message.msg_control = control;
        message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* entry = CMSG_FIRSTHDR(&message);
        entry->cmsg_level = SOL_SOCKET;
        entry->cmsg_type = SCM_RIGHTS;
        entry->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        memcpy(CMSG_DATA(entry), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t sent;
    do {
        sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent <= 0) {
        error = strerror(errno);
        return false;
    }
    // The descriptors went with the first byte; the rest of the header goes plainly.
    return write_all(socket, header.data().data() + sent, header.data().size() - size_t(sent),
                     error) &&
           write_all(socket, payload.data(), payload.size(), error);
}

bool receive_frame(int socket, HandoverFrame& frame, std::string& error) {
    frame = HandoverFrame{};
    char header[header_size];
    iovec vector{header, header_size};
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * handover_fds_max)] = {};
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ssize_t got;
    do {
        got = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
        error = got == 0 ? "closed" : strerror(errno);
        return false;
    }
    for (cmsghdr* entry = CMSG_FIRSTHDR(&message); entry != nullptr;
         entry = CMSG_NXTHDR(&message, entry)) {
        if (entry->cmsg_level != SOL_SOCKET || entry->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (entry->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            memcpy(&fd, CMSG_DATA(entry) + i * sizeof(int), sizeof fd);
            frame.fds.emplace_back(fd);
        }
    }
    if ((message.msg_flags & MSG_CTRUNC) != 0) {
        error = "too many descriptors in one frame";
        return false;
    }
    if (!read_all(socket, header + got, header_size - size_t(got), error)) return false;
    base::ByteReader reader(std::string_view(header, header_size));
    uint32_t mark = reader.u32();
    uint8_t kind = reader.u8();
    uint32_t size = reader.u32();
    uint8_t fd_count = reader.u8();
    if (mark != frame_mark || kind < uint8_t(HandoverKind::Hello) ||
        kind > uint8_t(HandoverKind::ListenersEnd) || size > handover_payload_max ||
        fd_count != frame.fds.size()) {
        error = "malformed frame header";
        return false;
    }
    frame.kind = HandoverKind(kind);
    frame.payload.resize(size);
    return read_all(socket, frame.payload.data(), size, error);
}

base::UniqueFd listen_handover(const std::string& path, std::string& error) {
    sockaddr_un address;
    if (!unix_address(path, address, error)) return {};
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        error = strerror(errno);
        return {};
    }
    ::unlink(path.c_str());
    mode_t old_mask = umask(0177);  // 0600: only pgplex's own user may take over
    int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
    umask(old_mask);
    if (bound != 0 || ::listen(fd.get(), 4) != 0) {
        error = path + ": " + strerror(errno);
        return {};
    }
    return fd;
}

base::UniqueFd connect_handover(const std::string& path, std::string& error) {
    sockaddr_un address;
    if (!unix_address(path, address, error)) return {};
    base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid() ||
        ::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        error = path + ": " + strerror(errno);
        return {};
    }
    return fd;
}

std::string listener_encode(const ListenerInfo& info) {
    base::ByteWriter writer;
    writer.u32(info.worker);
    writer.bytes(info.cluster);
    writer.bytes(info.service);
    writer.bytes(info.endpoint);
    return writer.take();
}

bool listener_decode(std::string_view payload, ListenerInfo& info) {
    base::ByteReader reader(payload);
    info.worker = reader.u32();
    info.cluster = reader.bytes(256);
    info.service = reader.bytes(256);
    info.endpoint = reader.bytes(4096);
    return reader.at_end();
}

}  // namespace pgplex::io
