// MD5 password authentication: hashes match PostgreSQL's, challenge answers match what libpq
// sends, and verify() accepts exactly the right password whether the secret is stored
// plain or hashed. Expected values come from PostgreSQL 15 (pg_authid.rolpassword) and from
// Python's hashlib, not from this code.
#include <criterion/criterion.h>

#include "../support.h"

#include <array>
#include <string>

#include "pgplex/tls/md5.h"

namespace md5 = pgplex::tls::md5;


namespace {

constexpr std::array<uint8_t, 4> salt_1234 = {0x01, 0x02, 0x03, 0x04};
constexpr std::array<uint8_t, 4> salt_deadbeef = {0xde, 0xad, 0xbe, 0xef};

}  // namespace

Test(md5, password_hash_matches_what_postgresql_stores) {
    assert_text(md5::password_hash("postgres", "postgres"), "md53175bce1d3201d16594cebf9d7eb3f9d");
    // CREATE ROLE bob PASSWORD 'postgres' with password_encryption = md5, PostgreSQL 15.
    assert_text(md5::password_hash("bob", "postgres"), "md565170a859842ceb2930dc2fa1454af9d");
}

Test(md5, is_hash_accepts_only_md5_and_32_lowercase_hex_digits) {
    cr_assert(md5::is_hash("md53175bce1d3201d16594cebf9d7eb3f9d"));
    cr_assert_not(md5::is_hash("md53175BCE1D3201D16594CEBF9D7EB3F9D"));
    cr_assert_not(md5::is_hash("md53175bce1d3201d16594cebf9d7eb3f9"));
    cr_assert_not(md5::is_hash("md53175bce1d3201d16594cebf9d7eb3f9d0"));
    cr_assert_not(md5::is_hash("xx53175bce1d3201d16594cebf9d7eb3f9d"));
    cr_assert_not(md5::is_hash("md53175bce1d3201d16594cebf9d7eb3f9g"));
    cr_assert_not(md5::is_hash(""));
}

Test(md5, response_from_hash_matches_what_libpq_sends_for_a_fixed_salt) {
    assert_text(md5::response_from_hash("md53175bce1d3201d16594cebf9d7eb3f9d", salt_1234),
                "md568be9ed08db75f318087ab337aaea044");
    assert_text(md5::response_from_hash("md565170a859842ceb2930dc2fa1454af9d", salt_deadbeef),
                "md57abe6f86ac8cf06169495174351d955d");
}

Test(md5, verify_accepts_the_right_password_against_a_plain_secret) {
    cr_assert(md5::verify("bob", "postgres", salt_deadbeef, "md57abe6f86ac8cf06169495174351d955d"));
}

Test(md5, verify_accepts_the_right_password_against_a_hashed_secret) {
    cr_assert(md5::verify("bob", "md565170a859842ceb2930dc2fa1454af9d", salt_deadbeef,
                          "md57abe6f86ac8cf06169495174351d955d"));
}

Test(md5, verify_rejects_a_wrong_password) {
    std::string wrong =
        md5::response_from_hash(md5::password_hash("bob", "Postgres"), salt_deadbeef);
    cr_assert_not(md5::verify("bob", "postgres", salt_deadbeef, wrong));
    cr_assert_not(md5::verify("bob", "md565170a859842ceb2930dc2fa1454af9d", salt_deadbeef, wrong));
}

Test(md5, verify_rejects_the_right_answer_to_a_different_salt) {
    cr_assert_not(md5::verify("bob", "postgres", salt_1234, "md57abe6f86ac8cf06169495174351d955d"));
}

Test(md5, verify_rejects_the_same_password_for_another_user) {
    std::string for_alice =
        md5::response_from_hash(md5::password_hash("alice", "postgres"), salt_deadbeef);
    cr_assert_not(md5::verify("bob", "postgres", salt_deadbeef, for_alice));
}

Test(md5, verify_rejects_truncated_or_empty_answers_and_empty_secrets) {
    cr_assert_not(
        md5::verify("bob", "postgres", salt_deadbeef, "md57abe6f86ac8cf06169495174351d955"));
    cr_assert_not(md5::verify("bob", "postgres", salt_deadbeef, ""));
    std::string for_empty = md5::response_from_hash(md5::password_hash("bob", ""), salt_deadbeef);
    cr_assert_not(md5::verify("bob", "", salt_deadbeef, for_empty));
}

Test(md5, verify_never_treats_a_scram_secret_as_a_password) {
    const char* secret =
        "SCRAM-SHA-256$4096:/YcsYoPFv+gHomyTYw35lw==$X0HFWsITk7XQUUte4Nn2CICeo0ekIwKqSyyKacCi95g"
        "=:FlV5zPoYmFY314qfgLe5Wl2/yL/z6x7VDUfY85fr2HI=";
    std::string answer = md5::response_from_hash(md5::password_hash("alice", secret), salt_1234);
    cr_assert_not(md5::verify("alice", secret, salt_1234, answer));
}
