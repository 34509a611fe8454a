// For unit tests and fuzz targets of pgplex's TLS: a throwaway identity made in memory (an
// EC P-256 key and a self-signed certificate for CN=localhost), written as PEM files to a
// fresh directory, since tls::Context reads files as pgplex.toml names them.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <cstdio>
#include <string>

namespace tls_test {

struct Identity {
    std::string dir, cert_file, key_file;
};

inline bool write_pem(const std::string& path, EVP_PKEY* key, X509* cert) {
    FILE* file = std::fopen(path.c_str(), "w");
    if (file == nullptr) return false;
    bool ok = key != nullptr
                  ? PEM_write_PrivateKey(file, key, nullptr, nullptr, 0, nullptr, nullptr) == 1
                  : PEM_write_X509(file, cert) == 1;
    return std::fclose(file) == 0 && ok;
}

// common_name: the certificate's CN. Empty dir on failure.
inline Identity make_identity(const char* common_name = "localhost") {
    Identity identity;
    char pattern[] = "/tmp/pgplex-tls-test-XXXXXX";
    if (mkdtemp(pattern) == nullptr) return identity;
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    if (key == nullptr || cert == nullptr) return identity;
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    std::string dir = pattern;
    identity.cert_file = dir + "/cert.pem";
    identity.key_file = dir + "/key.pem";
    if (write_pem(identity.cert_file, nullptr, cert) && write_pem(identity.key_file, key, nullptr))
        identity.dir = dir;
    X509_free(cert);
    EVP_PKEY_free(key);
    return identity;
}

}  // namespace tls_test
