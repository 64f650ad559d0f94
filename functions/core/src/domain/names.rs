//! Validated names (CONTRACT §1). A raw string becomes one of these at the edge, or is
//! rejected; nothing is ever normalised.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// `1–63` chars of `a-z 0-9 -`, starting and ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `1–64` chars of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, never `latest`.
pub fn is_version_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && s != "latest"
}

/// `1–64` chars of `A-Z a-z 0-9 . _ - /`.
pub fn is_label_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'))
}

/// `1–64` chars (Unicode scalar values), no control characters.
pub fn is_label_value(s: &str) -> bool {
    let n = s.chars().count();
    (1..=64).contains(&n) && !s.chars().any(char::is_control)
}

/// `1–32` chars of `a-z 0-9 -`.
pub fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:path, $rule:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` against the contract's rule; the error says what the rule is.
            pub fn parse(s: &str) -> Result<Self, String> {
                if $check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(concat!("must be ", $rule).to_owned())
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A tenant: a DNS label.
    TenantName, is_dns_label, "1-63 chars of a-z 0-9 -, starting and ending with a letter or digit"
);
name_type!(
    /// A service: a DNS label.
    ServiceName, is_dns_label, "1-63 chars of a-z 0-9 -, starting and ending with a letter or digit"
);
name_type!(
    /// An environment: a DNS label.
    EnvName, is_dns_label, "1-63 chars of a-z 0-9 -, starting and ending with a letter or digit"
);
name_type!(
    /// A version name; `latest` is reserved.
    VersionName, is_version_name, "1-64 chars of A-Z a-z 0-9 . _ -, starting with a letter or digit, and not 'latest'"
);
name_type!(
    /// An endpoint id: a DNS label, unique within a route.
    EndpointId, is_dns_label, "1-63 chars of a-z 0-9 -, starting and ending with a letter or digit"
);
name_type!(
    /// A label key.
    LabelKey, is_label_key, "1-64 chars of A-Z a-z 0-9 . _ - /"
);
name_type!(
    /// A label value.
    LabelValue, is_label_value, "1-64 chars without control characters"
);
name_type!(
    /// A region name.
    Region, is_region, "1-32 chars of a-z 0-9 -"
);

/// `(tenant, service, env)`: the unit that `latest` and ranges choose within, and the
/// Kafka key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Tenant.
    pub tenant: TenantName,
    /// Service.
    pub service: ServiceName,
    /// Environment.
    pub env: EnvName,
}

impl ServiceKey {
    /// The Kafka message key: `{tenant}/{service}/{env}`.
    pub fn event_key(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.service, self.env)
    }
}

/// `(tenant, service, env, version)`: one route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    /// Tenant, service and environment.
    pub svc: ServiceKey,
    /// Version.
    pub version: VersionName,
}

impl RouteKey {
    /// Parses all four names, naming the first bad one.
    pub fn parse(
        tenant: &str,
        service: &str,
        env: &str,
        version: &str,
    ) -> Result<Self, crate::Error> {
        Ok(Self {
            svc: ServiceKey::parse(tenant, service, env)?,
            version: VersionName::parse(version)
                .map_err(|e| crate::Error::invalid("version", e))?,
        })
    }
}

impl ServiceKey {
    /// Parses the three names, naming the first bad one.
    pub fn parse(tenant: &str, service: &str, env: &str) -> Result<Self, crate::Error> {
        Ok(Self {
            tenant: TenantName::parse(tenant).map_err(|e| crate::Error::invalid("tenant", e))?,
            service: ServiceName::parse(service)
                .map_err(|e| crate::Error::invalid("service", e))?,
            env: EnvName::parse(env).map_err(|e| crate::Error::invalid("env", e))?,
        })
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.svc.event_key(), self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dns_labels_follow_the_contract() {
        for ok in ["a", "acme", "a-b", "0", "a1-2b", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "ä",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn version_names_follow_the_contract_and_reserve_latest() {
        for ok in [
            "2.3.1",
            "1",
            "canary",
            "V1_a-b.c",
            "v2.0.0-rc.1",
            &"a".repeat(64),
        ] {
            assert!(is_version_name(ok), "{ok}");
        }
        for bad in [
            "",
            "latest",
            ".1",
            "-a",
            "_a",
            "a/b",
            "a+b",
            "^2",
            &"a".repeat(65),
        ] {
            assert!(!is_version_name(bad), "{bad}");
        }
        assert!(
            is_version_name("Latest"),
            "names are case-sensitive: only 'latest' is reserved"
        );
    }

    #[test]
    fn labels_and_regions_follow_the_contract() {
        assert!(is_label_key("team/owner.x_y-z"));
        assert!(!is_label_key("a b"));
        assert!(!is_label_key(""));
        assert!(is_label_value("payments team ✓"));
        assert!(!is_label_value("a\nb"));
        assert!(!is_label_value(&"é".repeat(65)));
        assert!(is_label_value(&"é".repeat(64)));
        assert!(is_region("eu-west-1"));
        assert!(!is_region("EU"));
        assert!(!is_region(&"a".repeat(33)));
    }

    #[test]
    fn route_key_parse_names_the_bad_field() {
        let err = RouteKey::parse("acme", "Checkout", "prod", "1").unwrap_err();
        assert!(matches!(err, crate::Error::InvalidRequest(m) if m.starts_with("service:")));
    }

    proptest! {
        #[test]
        fn a_dns_label_is_never_normalised(s in "\\PC{0,70}") {
            match TenantName::parse(&s) {
                Ok(t) => prop_assert_eq!(t.as_str(), s.as_str()),
                Err(_) => prop_assert!(!is_dns_label(&s)),
            }
        }

        #[test]
        fn generated_dns_labels_are_accepted(s in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?") {
            prop_assert!(is_dns_label(&s));
        }

        #[test]
        fn generated_version_names_are_accepted(s in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}") {
            prop_assume!(s != "latest");
            prop_assert!(is_version_name(&s));
        }
    }
}
