//! Request validation shared by every `tandem.v1` service.
//!
//! Each helper checks one field and, when the value is not acceptable,
//! returns `INVALID_ARGUMENT` whose message starts with the field's path in
//! the request, as `common.proto` promises: for example
//! `endpoints[0]: must be an http:// or https:// URL` or
//! `credentials.password: required for AUTH_METHOD_BASIC`.
//!
//! Field paths follow the proto field names: `parent.child`, `list[2]` and
//! `map["key"]`. Build nested ones with [`field`], [`index`] and [`key`].

use std::fmt::Display;

use tonic::Status;
use uuid::Uuid;

/// `INVALID_ARGUMENT` with the message `"{field}: {problem}"`.
pub fn invalid(field: impl Display, problem: impl Display) -> Status {
    Status::invalid_argument(format!("{field}: {problem}"))
}

/// The path of `child` inside `parent`, e.g. `credentials.password`.
pub fn field(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

/// The path of element `i` of the repeated field `list`, e.g. `endpoints[1]`.
pub fn index(list: &str, i: usize) -> String {
    format!("{list}[{i}]")
}

/// The path of entry `key` of the map field `map`, e.g. `labels["team"]`.
pub fn key(map: &str, key: &str) -> String {
    format!("{map}[{key:?}]")
}

/// A required string: present and not blank. Returns it unchanged.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        return Err(invalid(field, "required"));
    }
    Ok(value)
}

/// At most `max` characters.
pub fn max_chars(field: &str, value: &str, max: usize) -> Result<(), Status> {
    let n = value.chars().count();
    if n > max {
        return Err(invalid(
            field,
            format!("must be at most {max} characters (got {n})"),
        ));
    }
    Ok(())
}

/// A resource name: 1-63 characters of lowercase letters, digits and `-`
/// (cluster names, and the other unique names of the API).
pub fn resource_name(field: &str, value: &str) -> Result<(), Status> {
    required(field, value)?;
    max_chars(field, value, 63)?;
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(invalid(
            field,
            format!("{value:?} contains {bad:?}; use only lowercase letters, digits and '-'"),
        ));
    }
    Ok(())
}

/// A server-assigned id: a UUID in its text form.
pub fn id(field: &str, value: &str) -> Result<Uuid, Status> {
    required(field, value)?;
    Uuid::parse_str(value.trim()).map_err(|_| invalid(field, format!("{value:?} is not a UUID")))
}

/// An HTTP endpoint: an absolute `http://` or `https://` URL with a host,
/// and nothing else (no credentials, path, query or fragment). Returns it
/// normalised without a trailing `/`.
pub fn http_endpoint(field: &str, value: &str) -> Result<String, Status> {
    let text = required(field, value)?.trim();
    let url = reqwest::Url::parse(text)
        .map_err(|e| invalid(field, format!("{text:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            field,
            format!("{text:?} must be an http:// or https:// URL"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, format!("{text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Secrets in URLs end up in logs; they belong in the credentials.
        return Err(invalid(
            field,
            "must not contain credentials; set them in `credentials` instead",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            field,
            format!("{text:?} must be scheme://host[:port] without a path, query or fragment"),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A proto enum value: a known value of `E`, and not its `*_UNSPECIFIED`
/// zero unless `allow_unspecified`.
pub fn enum_value<E>(field: &str, value: i32, allow_unspecified: bool) -> Result<E, Status>
where
    E: TryFrom<i32>,
{
    if value == 0 && !allow_unspecified {
        return Err(invalid(field, "required (must not be *_UNSPECIFIED)"));
    }
    E::try_from(value).map_err(|_| invalid(field, format!("{value} is not a known value")))
}

/// A `google.protobuf.Duration` that is well formed, not negative and at
/// most `max`. Unset gives zero.
pub fn duration(
    field: &str,
    value: Option<&prost_types::Duration>,
    max: std::time::Duration,
) -> Result<std::time::Duration, Status> {
    let Some(d) = value else {
        return Ok(std::time::Duration::ZERO);
    };
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(invalid(
            field,
            "must be a non-negative duration with nanos in 0..1e9",
        ));
    }
    let got = std::time::Duration::new(d.seconds as u64, d.nanos as u32);
    if got > max {
        return Err(invalid(
            field,
            format!(
                "must be at most {}s (got {}s)",
                max.as_secs(),
                got.as_secs()
            ),
        ));
    }
    Ok(got)
}

/// Labels as `LabelSet` documents them. Keys: 1-63 characters of lowercase
/// letters, digits, `-`, `_` and `.`, optionally prefixed by a DNS name and
/// `/`; values: up to 253 characters; at most 64 labels.
pub fn labels<'a>(
    field: &str,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), Status> {
    let mut count = 0;
    for (k, v) in labels {
        count += 1;
        let path = key(field, k);
        let name = match k.rsplit_once('/') {
            Some((prefix, name)) => {
                let dns_ok = !prefix.is_empty()
                    && prefix.len() <= 253
                    && prefix.split('.').all(|part| {
                        !part.is_empty()
                            && part
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    });
                if !dns_ok {
                    return Err(invalid(
                        &path,
                        "the key's prefix before '/' must be a lowercase DNS name",
                    ));
                }
                name
            }
            None => k.as_str(),
        };
        let name_ok = (1..=63).contains(&name.len())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !name_ok {
            return Err(invalid(
                &path,
                "keys are 1-63 characters of lowercase letters, digits, '-', '_' and '.'",
            ));
        }
        max_chars(&path, v, 253)?;
    }
    if count > 64 {
        return Err(invalid(field, format!("at most 64 labels (got {count})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(status: Status) -> String {
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_string()
    }

    #[test]
    fn names_follow_the_resource_rule() {
        resource_name("name", "es-old-1").unwrap();
        assert!(message(resource_name("name", "").unwrap_err()).starts_with("name: required"));
        assert!(message(resource_name("name", "Prod").unwrap_err()).contains("'P'"));
        assert!(message(resource_name("name", &"a".repeat(64)).unwrap_err()).contains("63"));
    }

    #[test]
    fn endpoints_are_plain_http_urls() {
        assert_eq!(
            http_endpoint("endpoints[0]", "https://es:9200/").unwrap(),
            "https://es:9200"
        );
        assert_eq!(
            http_endpoint("endpoints[0]", "http://127.0.0.1:9200").unwrap(),
            "http://127.0.0.1:9200"
        );
        for bad in [
            "es:9200",
            "ftp://es:21",
            "http://u:p@es:9200",
            "http://es:9200/prefix",
            "http://es:9200/?pretty",
            "",
        ] {
            let msg = message(http_endpoint("endpoints[0]", bad).unwrap_err());
            assert!(msg.starts_with("endpoints[0]: "), "{bad}: {msg}");
            assert!(!msg.contains(":p@"), "credentials echoed: {msg}");
        }
    }

    #[test]
    fn ids_must_be_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(super::id("cluster_id", &id.to_string()).unwrap(), id);
        assert!(message(super::id("cluster_id", "42").unwrap_err()).starts_with("cluster_id: "));
        assert!(message(super::id("cluster_id", "").unwrap_err()).contains("required"));
    }

    #[test]
    fn labels_keys_and_values_are_checked() {
        let ok = [
            ("team".to_string(), "search".to_string()),
            ("tandem.io/env".to_string(), "prod".to_string()),
        ];
        labels("labels", ok.iter().map(|(k, v)| (k, v))).unwrap();
        for (k, v) in [
            ("Team", "x"),
            ("/x", "y"),
            ("a/", "y"),
            ("ok", &*"v".repeat(254)),
        ] {
            let pair = (k.to_string(), v.to_string());
            let msg = message(labels("labels", [(&pair.0, &pair.1)]).unwrap_err());
            assert!(msg.starts_with(&format!("labels[{k:?}]: ")), "{msg}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        let max = std::time::Duration::from_secs(60);
        assert_eq!(
            duration("limits.max_wait", None, max).unwrap(),
            std::time::Duration::ZERO
        );
        let neg = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert!(
            message(duration("limits.max_wait", Some(&neg), max).unwrap_err())
                .starts_with("limits.max_wait: ")
        );
        let long = prost_types::Duration {
            seconds: 61,
            nanos: 0,
        };
        assert!(duration("limits.max_wait", Some(&long), max).is_err());
    }
}
