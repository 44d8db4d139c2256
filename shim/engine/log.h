// Async-signal-safe diagnostics: every line is built in a stack buffer and
// written to stderr with one write(2), prefixed "psxshim: ".  No stdio, no
// allocation, so a line can be emitted from a signal handler, from a
// broadcast started inside one, or just before the process is killed.
#pragma once

#include <cstddef>

namespace psxshim::log {

// A line is written when emit() is called or, failing that, when it goes out
// of scope, so `log::Line() << "a" << 1;` is a complete statement.
class Line {
public:
    Line();
    ~Line();
    Line(const Line &) = delete;
    Line &operator=(const Line &) = delete;
    Line &operator<<(const char *s);
    Line &operator<<(long v);
    Line &operator<<(int v) { return *this << static_cast<long>(v); }
    Line &operator<<(unsigned v) { return *this << static_cast<long>(v); }
    Line &hex(unsigned long v);
    Line &errname(long negative_errno);  // "EPERM (1)"
    void emit();                         // appends '\n' and writes the line, once

private:
    char buf_[512];
    std::size_t len_;
    bool done_ = false;
};

// Whether PSXSHIM_DEBUG asked for the log (read once at start-up).
bool debug();
void init_from_environment();

}  // namespace psxshim::log
