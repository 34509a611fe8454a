// Helpers shared by the Criterion unit tests.
#pragma once

#include <criterion/criterion.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "pgplex/config/config.h"

// Criterion's string assertions keep only the pointers they are given; these copies keep
// the text of a temporary std::string alive for the check.
#define assert_text(actual, expected)                                 \
    do {                                                              \
        const std::string actual_text = (actual);                     \
        const std::string expected_text = (expected);                 \
        cr_assert_str_eq(actual_text.c_str(), expected_text.c_str()); \
    } while (0)

// Loading a pgplex.toml written by the test (tests/unit/config/): the error-checking
// helpers live in their own namespace so tests of other parsers may have a refused() too.
namespace config_test {

// A fresh directory under /tmp, removed with everything in it at the end of the test.
class TempDir {
  public:
    TempDir() {
        char pattern[] = "/tmp/pgplex-load-test-XXXXXX";
        cr_assert_not_null(mkdtemp(pattern));
        path_ = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string write(const std::string& name, const std::string& text) const {
        std::string file = path_ + "/" + name;
        std::filesystem::create_directories(std::filesystem::path(file).parent_path());
        std::ofstream(file) << text;
        return file;
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// Writes `text` as DIR/pgplex.toml and loads it.
inline pgplex::config::LoadResult load_text(const TempDir& dir, const std::string& text) {
    return pgplex::config::load(dir.write("pgplex.toml", text));
}

// The result must outlive the reference: pass a named LoadResult, never a temporary.
const pgplex::config::Config& loaded(const pgplex::config::LoadResult&& result) = delete;
inline const pgplex::config::Config& loaded(const pgplex::config::LoadResult& result) {
    cr_assert_not_null(result.config.get(), "%s", result.error.c_str());
    return *result.config;
}

// Loads `text` expecting failure; returns the error with the directory replaced by "DIR".
inline std::string refused(const std::string& text, const TempDir& dir = TempDir()) {
    pgplex::config::LoadResult result = load_text(dir, text);
    cr_assert_null(result.config.get(), "loaded:\n%s", text.c_str());
    std::string error = result.error;
    for (size_t at; (at = error.find(dir.path())) != std::string::npos;)
        error.replace(at, dir.path().size(), "DIR");
    return error;
}

inline void assert_refused(const std::string& text, const std::string& expected) {
    std::string error = refused(text);
    assert_text(error, expected);
}

}  // namespace config_test
