// The async-signal-safe line writer: formatting, truncation, single write.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <string>

#include "engine/log.h"

namespace {

// Capture what a Line writes to fd 2.
std::string capture(void (*fn)()) {
    int p[2];
    REQUIRE(pipe(p) == 0);
    int saved = dup(2);
    dup2(p[1], 2);
    fn();
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    std::string out;
    char buf[1024];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(p[0]);
    return out;
}

}  // namespace

TEST_CASE("a line has the prefix, the parts and one newline") {
    auto out = capture([] { psxshim::log::Line() << "capset: thread " << 1234 << " got " << -5L; });
    CHECK(out == "psxshim: capset: thread 1234 got -5\n");
}

TEST_CASE("errno names and hex") {
    auto out = capture([] {
        psxshim::log::Line l;
        l.errname(-1).hex(0x1fUL);
        l << " " << 0;
    });
    CHECK(out == "psxshim: EPERM (1)0x1f 0\n");
}

TEST_CASE("emit writes once even when the destructor runs too") {
    auto out = capture([] {
        psxshim::log::Line l;
        l << "once";
        l.emit();
    });
    CHECK(out == "psxshim: once\n");
}

TEST_CASE("an overlong line is truncated, not overflowed") {
    auto out = capture([] {
        psxshim::log::Line l;
        for (int i = 0; i < 200; i++) l << "abcdef";
    });
    CHECK(out.size() <= 512);
    CHECK(out.back() == '\n');
    CHECK(out.rfind("psxshim: abcdef", 0) == 0);
}

TEST_CASE("the most negative number formats") {
    auto out = capture([] { psxshim::log::Line() << (-9223372036854775807L - 1); });
    CHECK(out == "psxshim: -9223372036854775808\n");
}
