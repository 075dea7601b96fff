//! The API version (major.minor) and the rule that says whether a client can use a core.
//!
//! A minor version adds (methods, optional parameters, result fields, events); a major version
//! changes or removes. A client works with a core of the same major and an equal or higher minor.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the API defined in this crate.
pub const API_VERSION: ApiVersion = ApiVersion { major: 1, minor: 3 };

/// An API version, written `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    /// Parse `major.minor`.
    pub fn parse(s: &str) -> Option<Self> {
        let (major, minor) = s.split_once('.')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// Whether a client speaking `self` can use a core speaking `core`.
    pub fn works_with(self, core: ApiVersion) -> bool {
        self.major == core.major && core.minor >= self.minor
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Answer of `version` (also in `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionInfo {
    /// The API version the core speaks, `major.minor`.
    pub api: String,
    /// The core's own version (its package version).
    pub core: String,
}

impl VersionInfo {
    /// This build's versions.
    pub fn current() -> Self {
        Self {
            api: API_VERSION.to_string(),
            core: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_works_with_the_same_major_and_an_equal_or_higher_minor() {
        let v = |s| ApiVersion::parse(s).unwrap();
        assert!(v("1.2").works_with(v("1.2")));
        assert!(v("1.2").works_with(v("1.3")));
        assert!(!v("1.2").works_with(v("1.1")));
        assert!(!v("1.2").works_with(v("2.2")));
        assert!(!v("2.0").works_with(v("1.9")));
        assert_eq!(ApiVersion::parse("1"), None);
        assert_eq!(ApiVersion::parse("x.1"), None);
        assert_eq!(v("1.10").to_string(), "1.10");
    }
}
