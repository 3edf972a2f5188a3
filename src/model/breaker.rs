//! Circuit breaker state machine (being written).
