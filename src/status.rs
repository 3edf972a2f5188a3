//! The status codes a call can end with: a small gRPC-like set with HTTP equivalents.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    DeadlineExceeded,
    Internal,
}

impl Status {
    pub const COUNT: usize = 9;
    pub const ALL: [Status; Status::COUNT] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::NotFound,
        Status::FailedPrecondition,
        Status::PermissionDenied,
        Status::ResourceExhausted,
        Status::Unavailable,
        Status::DeadlineExceeded,
        Status::Internal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InvalidArgument => "invalid_argument",
            Status::NotFound => "not_found",
            Status::FailedPrecondition => "failed_precondition",
            Status::PermissionDenied => "permission_denied",
            Status::ResourceExhausted => "resource_exhausted",
            Status::Unavailable => "unavailable",
            Status::DeadlineExceeded => "deadline_exceeded",
            Status::Internal => "internal",
        }
    }

    /// The HTTP status a REST gateway would answer with.
    pub fn http(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::InvalidArgument => 400,
            Status::NotFound => 404,
            Status::FailedPrecondition => 412,
            Status::PermissionDenied => 403,
            Status::ResourceExhausted => 429,
            Status::Unavailable => 503,
            Status::DeadlineExceeded => 504,
            Status::Internal => 500,
        }
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a handler maps the statuses of the calls it makes to the status it returns,
/// e.g. a downstream not_found becomes this endpoint's invalid_argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation([Status; Status::COUNT]);

impl Default for Translation {
    fn default() -> Self {
        Translation(Status::ALL)
    }
}

impl Translation {
    pub fn set(&mut self, from: Status, to: Status) {
        assert!(!from.is_ok(), "ok is never translated");
        self.0[from.index()] = to;
    }
    pub fn apply(&self, s: Status) -> Status {
        self.0[s.index()]
    }
    /// `self`, with the entries `over` changes taking precedence.
    pub fn overlaid(&self, over: &Translation) -> Translation {
        let mut t = *self;
        for s in Status::ALL {
            if over.apply(s) != s {
                t.0[s.index()] = over.apply(s);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_name(s.name()), Some(s));
        }
        assert_eq!(Status::from_name("teapot"), None);
    }

    #[test]
    fn http_equivalents_follow_grpc_s_mapping() {
        let codes: Vec<u16> = Status::ALL.iter().map(|s| s.http()).collect();
        assert_eq!(codes, [200, 400, 404, 412, 403, 429, 503, 504, 500]);
    }

    #[test]
    fn translation_overlay_keeps_unchanged_entries() {
        let mut endpoint = Translation::default();
        endpoint.set(Status::NotFound, Status::InvalidArgument);
        endpoint.set(Status::Internal, Status::Unavailable);
        let mut call = Translation::default();
        call.set(Status::NotFound, Status::FailedPrecondition);
        let t = endpoint.overlaid(&call);
        assert_eq!(t.apply(Status::NotFound), Status::FailedPrecondition);
        assert_eq!(t.apply(Status::Internal), Status::Unavailable);
        assert_eq!(t.apply(Status::Ok), Status::Ok);
    }
}
