// Linked with -static: psxshim(1) must refuse it (no loader reads LD_PRELOAD).
int main() { return 0; }
