//! Retry backoff and jitter (being written).
