//! Engine versions read from image tags: a hint for choosing a template, never a guarantee.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer};

use crate::pod::image::ImageRef;

/// A dotted numeric version such as `16.4` or `10.11.9`; missing components compare as 0.
#[derive(Clone, Debug, Eq)]
pub struct Version(Vec<u64>);

impl Version {
    /// Parses `"16"`, `"16.4"`, `"10.11.9"`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Option<Vec<u64>> = text.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }

    fn component(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        (0..n)
            .map(|i| self.component(i).cmp(&other.component(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Version::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a dotted numeric version like \"15\" or \"10.4\""
            ))
        })
    }
}

static SCLORG_REPO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(postgresql|mysql|mariadb|mongodb|spilo)-(\d+)").expect("static regex")
});
static STRIMZI_KAFKA: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-kafka-(\d+\.\d+\.\d+)").expect("static regex"));
static PG_IN_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|-)pg(\d+(?:\.\d+)?)").expect("static regex"));
static LEADING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^v?(\d+(?:\.\d+){0,2})").expect("static regex"));
static UBI_PREFIX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^ubi\d+-").expect("static regex"));

/// The engine version an image most likely runs, from its repository name or tag (section 4.3 of
/// the database hooks notes). `None` for `latest`, aliases like `lts`, or digest-only references.
pub fn from_image(image: &ImageRef) -> Option<Version> {
    // Each regex runs only when the literal it needs is present: this runs for every database
    // container on every admission, and most images match none of the special forms.
    let name = image.name();
    if let Some(c) = name
        .contains('-')
        .then(|| SCLORG_REPO.captures(name))
        .flatten()
    {
        let digits = &c[2];
        return match &c[1] {
            "postgresql" | "spilo" => Version::parse(digits),
            // sclorg packs major and minor together: mysql-80 is 8.0, mariadb-105 is 10.5.
            "mariadb" if digits.len() >= 3 => {
                Version::parse(&format!("{}.{}", &digits[..2], &digits[2..]))
            }
            _ if digits.len() >= 2 => Version::parse(&format!("{}.{}", &digits[..1], &digits[1..])),
            _ => Version::parse(digits),
        };
    }
    let tag = image.tag.as_deref()?;
    if let Some(c) = tag
        .contains("-kafka-")
        .then(|| STRIMZI_KAFKA.captures(tag))
        .flatten()
    {
        return Version::parse(&c[1]);
    }
    if let Some(c) = tag
        .contains("pg")
        .then(|| PG_IN_TAG.captures(tag))
        .flatten()
    {
        return Version::parse(&c[1]);
    }
    let tag = if tag.starts_with("ubi") {
        UBI_PREFIX.replace(tag, "")
    } else {
        std::borrow::Cow::Borrowed(tag)
    };
    LEADING.captures(&tag).and_then(|c| Version::parse(&c[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(image: &str) -> Option<String> {
        from_image(&ImageRef::parse(image).expect("valid image")).map(|v| v.to_string())
    }

    #[test]
    fn versions_from_common_tags() {
        assert_eq!(v("postgres:16.4-alpine3.20").as_deref(), Some("16.4"));
        assert_eq!(v("postgres:16").as_deref(), Some("16"));
        assert_eq!(v("postgres").as_deref(), None);
        assert_eq!(v("postgres:latest").as_deref(), None);
        assert_eq!(
            v("bitnami/postgresql:16.1.0-debian-11-r15").as_deref(),
            Some("16.1.0")
        );
        assert_eq!(v("postgis/postgis:16-3.4-alpine").as_deref(), Some("16"));
        assert_eq!(v("mariadb:10.11-jammy").as_deref(), Some("10.11"));
        assert_eq!(v("mysql:8.0.36-oracle").as_deref(), Some("8.0.36"));
        assert_eq!(v("redis:7.2-alpine").as_deref(), Some("7.2"));
    }

    #[test]
    fn engine_specific_tag_shapes() {
        assert_eq!(
            v("timescale/timescaledb:2.17.2-pg16").as_deref(),
            Some("16")
        );
        assert_eq!(
            v("timescale/timescaledb-ha:pg16.2-ts2.14.2").as_deref(),
            Some("16.2")
        );
        assert_eq!(v("pgvector/pgvector:0.7.0-pg16").as_deref(), Some("16"));
        assert_eq!(
            v("quay.io/strimzi/kafka:0.45.0-kafka-3.9.0").as_deref(),
            Some("3.9.0")
        );
        assert_eq!(
            v("registry.developers.crunchydata.com/crunchydata/crunchy-postgres:ubi8-16.2-0")
                .as_deref(),
            Some("16.2")
        );
        assert_eq!(v("zalando/spilo-16:3.3-p1").as_deref(), Some("16"));
        assert_eq!(
            v("registry.redhat.io/rhel9/postgresql-16:latest").as_deref(),
            Some("16")
        );
        assert_eq!(v("quay.io/sclorg/mysql-80-c9s").as_deref(), Some("8.0"));
        assert_eq!(v("quay.io/sclorg/mariadb-105-c9s").as_deref(), Some("10.5"));
    }

    #[test]
    fn ordering_treats_missing_parts_as_zero() {
        let p = |s| Version::parse(s).expect("version");
        assert!(p("10.11") > p("10.4"));
        assert_eq!(p("15"), p("15.0"));
        assert!(p("9.6") < p("10"));
        assert_eq!(Version::parse("lts"), None);
    }
}
