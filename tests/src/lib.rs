//! Holub's end-to-end suites live in `tests/`; this library holds what they share.
