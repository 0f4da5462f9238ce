//! Conversions between `google.protobuf.Timestamp` / `Duration` and the
//! standard library's time types, shared by every crate that speaks the
//! contract.

use std::time::{Duration, SystemTime};

/// A `google.protobuf.Timestamp` for `at` (anything convertible to a
/// `SystemTime`, such as `chrono::DateTime<Utc>`).
pub fn timestamp(at: impl Into<SystemTime>) -> prost_types::Timestamp {
    at.into().into()
}

/// A `google.protobuf.Duration` for `span`, saturating at the largest
/// representable duration.
pub fn duration(span: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(span).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 999_999_999,
    })
}

/// `span` as a standard duration; `None` when negative or malformed.
pub fn std_duration(span: prost_types::Duration) -> Option<Duration> {
    Duration::try_from(span).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(
            timestamp(at),
            prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5
            }
        );
        let span = Duration::from_millis(2500);
        assert_eq!(std_duration(duration(span)), Some(span));
        assert_eq!(duration(Duration::MAX).seconds, i64::MAX);
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(std_duration(negative), None);
    }
}
