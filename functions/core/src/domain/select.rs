//! Version selection (CONTRACT §4): `latest`, an exact version, or a Cargo-style semver
//! requirement. Pure functions over the routes of one `(tenant, service, env)`.

use super::names::VersionName;
use super::route::Route;
use crate::Error;
use semver::{Version, VersionReq};
use std::sync::Arc;

/// What a resolve asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The highest active, non-pre-release semver version.
    Latest,
    /// Exactly this version; never falls back.
    Exact(VersionName),
    /// The highest active version matching the requirement.
    Range(VersionReq),
}

impl Selector {
    /// `latest`, then a valid version name, then a semver requirement; else 400.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s == "latest" {
            return Ok(Selector::Latest);
        }
        if let Ok(v) = VersionName::parse(s) {
            return Ok(Selector::Exact(v));
        }
        VersionReq::parse(s).map(Selector::Range).map_err(|e| {
            Error::invalid(
                "selector",
                format!("not a version, 'latest' or a semver requirement ({e})"),
            )
        })
    }
}

/// Parses a version name as semver, allowing one leading `v`.
pub fn parse_semver(name: &str) -> Option<Version> {
    Version::parse(name.strip_prefix('v').unwrap_or(name)).ok()
}

/// The active routes of one `(tenant, service, env)`, with their versions parsed once so
/// repeated selections cost only comparisons.
#[derive(Clone, Debug, Default)]
pub struct VersionSet {
    exact: Vec<Arc<Route>>,
    semver: Vec<(Version, Arc<Route>)>,
}

impl VersionSet {
    /// Keeps the active routes; parses those whose version is semver.
    pub fn new(routes: impl IntoIterator<Item = Arc<Route>>) -> Self {
        let mut set = VersionSet::default();
        for r in routes.into_iter().filter(|r| r.active) {
            if let Some(v) = parse_semver(r.version.as_str()) {
                set.semver.push((v, r.clone()));
            }
            set.exact.push(r);
        }
        set
    }

    /// The route the selector picks, if any.
    pub fn choose(&self, sel: &Selector) -> Option<Arc<Route>> {
        match sel {
            Selector::Exact(v) => self.exact.iter().find(|r| &r.version == v).cloned(),
            Selector::Latest => self.highest(|v| v.pre.is_empty()),
            Selector::Range(req) => self.highest(|v| req.matches(v)),
        }
    }

    fn highest(&self, accept: impl Fn(&Version) -> bool) -> Option<Arc<Route>> {
        self.semver
            .iter()
            .filter(|(v, _)| accept(v))
            // Ties ("1.0.0" and "v1.0.0") break on the name, so every instance agrees.
            .max_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| ra.version.cmp(&rb.version)))
            .map(|(_, r)| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::RouteKey;
    use crate::domain::route::RouteSpec;
    use crate::domain::timefmt::Timestamp;

    fn route(version: &str, active: bool) -> Arc<Route> {
        let key = RouteKey::parse("t", "s", "e", version).unwrap();
        let mut spec =
            RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a"}]}"#).unwrap();
        spec.active = active;
        Arc::new(Route::from_spec(
            &key,
            spec,
            1,
            Timestamp::from_millis(0),
            "u",
        ))
    }

    fn set(versions: &[(&str, bool)]) -> VersionSet {
        VersionSet::new(versions.iter().map(|(v, a)| route(v, *a)))
    }

    fn pick(s: &VersionSet, sel: &str) -> Option<String> {
        s.choose(&Selector::parse(sel).unwrap())
            .map(|r| r.version.to_string())
    }

    #[test]
    fn selectors_parse_in_contract_order() {
        assert_eq!(Selector::parse("latest").unwrap(), Selector::Latest);
        assert!(matches!(Selector::parse("1").unwrap(), Selector::Exact(_)));
        assert!(matches!(
            Selector::parse("canary").unwrap(),
            Selector::Exact(_)
        ));
        assert!(matches!(
            Selector::parse("2.3.1").unwrap(),
            Selector::Exact(_)
        ));
        assert!(matches!(Selector::parse("^2").unwrap(), Selector::Range(_)));
        assert!(matches!(
            Selector::parse(">=1.2, <2").unwrap(),
            Selector::Range(_)
        ));
        assert!(matches!(Selector::parse("*").unwrap(), Selector::Range(_)));
        assert!(matches!(
            Selector::parse("^x"),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            Selector::parse(">>1"),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn latest_takes_the_highest_active_release() {
        let s = set(&[
            ("1.2.0", true),
            ("1.10.0", true),
            ("2.0.0", false),
            ("2.0.0-rc.1", true),
            ("canary", true),
        ]);
        assert_eq!(pick(&s, "latest").as_deref(), Some("1.10.0"));
    }

    #[test]
    fn a_leading_v_is_semver_too() {
        let s = set(&[("v1.2.0", true), ("1.1.0", true)]);
        assert_eq!(pick(&s, "latest").as_deref(), Some("v1.2.0"));
        assert_eq!(pick(&s, "~1.1").as_deref(), Some("1.1.0"));
    }

    #[test]
    fn exact_never_falls_back() {
        let s = set(&[("1.0.0", true), ("1.0.1", false)]);
        assert_eq!(pick(&s, "1.0.0").as_deref(), Some("1.0.0"));
        assert_eq!(pick(&s, "1.0.1"), None, "inactive is not found");
        assert_eq!(pick(&s, "1.0.2"), None);
        assert_eq!(pick(&s, "1"), None, "'1' is an exact name, not ^1");
    }

    #[test]
    fn requirements_take_the_highest_match() {
        let s = set(&[
            ("1.2.0", true),
            ("1.9.3", true),
            ("2.0.0", true),
            ("2.4.1", true),
            ("3.0.0", false),
        ]);
        assert_eq!(pick(&s, "^1").as_deref(), Some("1.9.3"));
        assert_eq!(pick(&s, "^2").as_deref(), Some("2.4.1"));
        assert_eq!(pick(&s, "~2.0").as_deref(), Some("2.0.0"));
        assert_eq!(pick(&s, ">=1.2, <2").as_deref(), Some("1.9.3"));
        assert_eq!(pick(&s, "^3"), None, "inactive routes are not considered");
        assert_eq!(pick(&s, "^4"), None);
    }

    #[test]
    fn pre_releases_only_when_the_requirement_names_one_on_the_same_patch() {
        let s = set(&[
            ("2.0.0-rc.1", true),
            ("2.0.0-rc.2", true),
            ("1.5.0", true),
            ("2.1.0-beta", true),
        ]);
        assert_eq!(pick(&s, "^2").as_deref(), None);
        assert_eq!(pick(&s, ">=2.0.0-rc.1").as_deref(), Some("2.0.0-rc.2"));
        assert_eq!(pick(&s, "^1").as_deref(), Some("1.5.0"));
        assert_eq!(pick(&s, "latest").as_deref(), Some("1.5.0"));
    }

    #[test]
    fn equal_semver_versions_break_ties_by_name() {
        let s1 = set(&[("v1.0.0", true), ("1.0.0", true)]);
        let s2 = set(&[("1.0.0", true), ("v1.0.0", true)]);
        assert_eq!(pick(&s1, "latest"), pick(&s2, "latest"));
    }
}
