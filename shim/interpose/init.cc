// Start-up.  Every entry point also initialises lazily, because a library
// loaded before us may create threads from its own constructor.
#include "engine/broadcast.h"

namespace {
__attribute__((constructor(101))) void psxshim_constructor() { psxshim::engine::ensure_init(); }
}  // namespace
