//! Container image references, parsed by the distribution/reference grammar.

use std::fmt;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference such as `docker.io/library/postgres:16@sha256:…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), normalised: Docker Hub is always `docker.io`.
    pub registry: String,
    /// Repository path under the registry, e.g. `library/postgres` or `bitnami/postgresql`.
    pub path: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest (`algorithm:hex`), if any.
    pub digest: Option<String>,
}

/// Why an image string is not a valid reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The reference was empty.
    #[error("image reference is empty")]
    Empty,
    /// A path component breaks the grammar.
    #[error(
        "image {image:?}: repository component {component:?} is not valid (lowercase letters, digits and . _ - separators)"
    )]
    Component {
        /// The full reference.
        image: String,
        /// The offending component.
        component: String,
    },
    /// The tag breaks the grammar.
    #[error(
        "image {image:?}: tag {tag:?} is not valid (up to 128 of [A-Za-z0-9_.-], not starting with . or -)"
    )]
    Tag {
        /// The full reference.
        image: String,
        /// The offending tag.
        tag: String,
    },
    /// The digest breaks the grammar.
    #[error("image {image:?}: digest {digest:?} is not valid (expected algorithm:hex)")]
    Digest {
        /// The full reference.
        image: String,
        /// The offending digest.
        digest: String,
    },
}

impl ImageRef {
    /// Parses `image` and applies Docker Hub normalisation (`postgres` → `docker.io/library/postgres`).
    pub fn parse(image: &str) -> Result<Self, ImageError> {
        if image.is_empty() {
            return Err(ImageError::Empty);
        }
        let (name_and_tag, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (image, None),
        };
        if let Some(d) = digest {
            if !valid_digest(d) {
                return Err(ImageError::Digest {
                    image: image.to_owned(),
                    digest: d.to_owned(),
                });
            }
        }
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_and_tag[..last_slash + i],
                Some(&name_and_tag[last_slash + i + 1..]),
            ),
            None => (name_and_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ImageError::Tag {
                    image: image.to_owned(),
                    tag: t.to_owned(),
                });
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => (first, rest.to_owned()),
            _ => (DOCKER_HUB, name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ImageError::Component {
                    image: image.to_owned(),
                    component: component.to_owned(),
                });
            }
        }
        Ok(Self {
            registry: registry.to_owned(),
            path,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The last path component, e.g. `postgresql` for `bitnami/postgresql`.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The last two path components (`namespace/name`), or `None` for a one-component path.
    pub fn namespaced_name(&self) -> Option<&str> {
        let mut slashes = self.path.rmatch_indices('/');
        let (last, _) = slashes.next()?;
        let start = slashes.next().map_or(0, |(i, _)| i + 1);
        let _ = last;
        Some(&self.path[start..])
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn looks_like_registry(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component == "localhost"
        || component.chars().any(|c| c.is_ascii_uppercase())
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && !t.starts_with(['.', '-'])
}

fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    !alg.is_empty()
        && alg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("postgres");
        assert_eq!(
            (r.registry.as_str(), r.path.as_str()),
            ("docker.io", "library/postgres")
        );
        assert_eq!(r.tag, None);
        assert_eq!(p("index.docker.io/library/redis:7").registry, "docker.io");
        assert_eq!(p("bitnami/postgresql:16").path, "bitnami/postgresql");
        assert_eq!(
            p("postgres:16.4-alpine3.20").tag.as_deref(),
            Some("16.4-alpine3.20")
        );
    }

    #[test]
    fn registry_with_port_is_not_a_tag() {
        let r = p("registry.local:5000/bitnami/postgresql");
        assert_eq!(r.registry, "registry.local:5000");
        assert_eq!(r.path, "bitnami/postgresql");
        assert_eq!(r.tag, None);
        let r = p("localhost/postgres:15");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost", Some("15"))
        );
    }

    #[test]
    fn digests_with_and_without_tag() {
        let hex = "a".repeat(64);
        let r = p(&format!("postgres:16@sha256:{hex}"));
        assert_eq!(r.tag.as_deref(), Some("16"));
        assert_eq!(r.digest, Some(format!("sha256:{hex}")));
        let r = p(&format!("postgres@sha256:{hex}"));
        assert_eq!(r.tag, None);
        assert!(ImageRef::parse("postgres@sha256:xyz").is_err());
    }

    #[test]
    fn mirrors_keep_their_prefix() {
        let r = p("123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/postgres:16");
        assert_eq!(r.name(), "postgres");
        assert_eq!(r.namespaced_name(), Some("library/postgres"));
        assert_eq!(
            p("harbor.corp/dockerhub/bitnami/redis:7.2").namespaced_name(),
            Some("bitnami/redis")
        );
    }

    #[test]
    fn invalid_references_are_rejected_with_reason() {
        assert_eq!(ImageRef::parse(""), Err(ImageError::Empty));
        assert!(matches!(
            ImageRef::parse("Postgres"),
            Err(ImageError::Component { .. })
        ));
        assert!(matches!(
            ImageRef::parse("postgres:-x"),
            Err(ImageError::Tag { .. })
        ));
        assert!(matches!(
            ImageRef::parse("a//b"),
            Err(ImageError::Component { .. })
        ));
    }
}
