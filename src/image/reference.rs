//! Image names as docker users write them: `busybox`, `busybox:1.36`,
//! `localhost:5000/team/app:v1`. Stored in their familiar form (no
//! `docker.io/library/`), with the tag defaulting to `latest`.

use super::ImageError;

pub const DEFAULT_TAG: &str = "latest";

/// A repository and tag, e.g. `busybox` and `latest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub repo: String,
    pub tag: String,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

impl Reference {
    /// Parses `name[:tag]`; digests (`@sha256:…`) are not supported.
    pub fn parse(text: &str) -> Result<Reference, ImageError> {
        let invalid = || ImageError::InvalidReference(text.to_string());
        // A ':' after the last '/' starts the tag; one before it is a port.
        let (repo, tag) = match text.rfind(':') {
            Some(i) if !text[i..].contains('/') => (&text[..i], Some(&text[i + 1..])),
            _ => (text, None),
        };
        let repo = normalize_repo(repo);
        if !valid_repo(&repo) {
            return Err(invalid());
        }
        let tag = tag.unwrap_or(DEFAULT_TAG);
        if !valid_tag(tag) {
            return Err(invalid());
        }
        Ok(Reference {
            repo,
            tag: tag.to_string(),
        })
    }

    /// A repository with an optional separate tag, as `docker import`,
    /// `docker tag` and `POST /images/{name}/tag` give them.
    pub fn from_parts(repo: &str, tag: Option<&str>) -> Result<Reference, ImageError> {
        match tag.filter(|t| !t.is_empty()) {
            Some(tag) => {
                let parsed = Reference::parse(repo)?;
                if repo
                    .rsplit('/')
                    .next()
                    .is_some_and(|last| last.contains(':'))
                {
                    // Both "repo:tag" and a separate tag: ambiguous.
                    return Err(ImageError::InvalidReference(format!("{repo}:{tag}")));
                }
                if !valid_tag(tag) {
                    return Err(ImageError::InvalidReference(format!("{repo}:{tag}")));
                }
                Ok(Reference {
                    repo: parsed.repo,
                    tag: tag.to_string(),
                })
            }
            None => Reference::parse(repo),
        }
    }
}

impl Reference {
    /// The `reference` filter of `docker images`: a shell pattern (Go's
    /// `path.Match`) against `repo:tag` or, failing that, against `repo`.
    pub fn matches(&self, pattern: &str) -> bool {
        let pattern: Vec<char> = pattern.chars().collect();
        let full: Vec<char> = self.to_string().chars().collect();
        let repo: Vec<char> = self.repo.chars().collect();
        path_match(&pattern, &full) || path_match(&pattern, &repo)
    }
}

/// Go's `path.Match`: `*` is any run of non-`/` characters, `?` one of them,
/// `[...]` a class (`^` negates, `a-z` ranges), `\` escapes. A malformed
/// pattern matches nothing.
fn path_match(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => {
            for skip in 0..=name.len() {
                if path_match(rest, &name[skip..]) {
                    return true;
                }
                if name.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some(('?', rest)) => match name.split_first() {
            Some((c, tail)) if *c != '/' => path_match(rest, tail),
            _ => false,
        },
        Some(('[', rest)) => {
            let Some((c, tail)) = name.split_first() else {
                return false;
            };
            match match_class(rest, *c) {
                Some((true, after)) if *c != '/' => path_match(after, tail),
                _ => false,
            }
        }
        Some(('\\', rest)) => match (rest.split_first(), name.split_first()) {
            (Some((p, rest)), Some((c, tail))) if p == c => path_match(rest, tail),
            _ => false,
        },
        Some((p, rest)) => match name.split_first() {
            Some((c, tail)) if c == p => path_match(rest, tail),
            _ => false,
        },
    }
}

/// Matches `c` against a class whose `[` is already consumed; returns
/// whether it matched and the pattern after the closing `]`, or `None` for a
/// malformed class.
fn match_class(mut pattern: &[char], c: char) -> Option<(bool, &[char])> {
    let negated = pattern.first() == Some(&'^');
    if negated {
        pattern = &pattern[1..];
    }
    let mut matched = false;
    let mut first = true;
    loop {
        match pattern.split_first()? {
            (']', rest) if !first => return Some((matched != negated, rest)),
            _ => {}
        }
        first = false;
        let (lo, rest) = class_char(pattern)?;
        pattern = rest;
        let hi = match pattern.split_first() {
            Some(('-', rest)) if rest.first() != Some(&']') => {
                let (hi, rest) = class_char(rest)?;
                pattern = rest;
                hi
            }
            _ => lo,
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

fn class_char(pattern: &[char]) -> Option<(char, &[char])> {
    match pattern.split_first()? {
        ('\\', rest) => rest.split_first().map(|(c, rest)| (*c, rest)),
        (']' | '-', _) => None,
        (c, rest) => Some((*c, rest)),
    }
}

/// Drops the default registry and library prefix, as the docker CLI shows names.
fn normalize_repo(repo: &str) -> String {
    for prefix in ["docker.io/library/", "index.docker.io/library/"] {
        if let Some(rest) = repo.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    for prefix in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = repo.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    repo.to_string()
}

/// Path components of lowercase alphanumerics joined by `.`, `_`, `__` or
/// `-`s; a first component with a `.` or `:` (or `localhost`) is a registry
/// host and may carry a port and upper case.
fn valid_repo(repo: &str) -> bool {
    if repo.is_empty() || repo.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let host = parts.remove(0);
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        let host_ok = !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !host_ok || !port_ok {
            return false;
        }
    }
    parts.iter().all(|p| valid_component(p))
}

fn valid_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // Separators: '.', '_', '__', or a run of '-'.
        let run = bytes[i..].iter().take_while(|b| **b == c).count();
        let ok = match c {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok || !bytes[i + run].is_ascii_alphanumeric() {
            return false;
        }
        i += run;
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn parses_familiar_names() {
        assert_eq!(r("busybox"), "busybox:latest");
        assert_eq!(r("busybox:1.36"), "busybox:1.36");
        assert_eq!(r("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(r("docker.io/me/app:v1"), "me/app:v1");
        assert_eq!(
            r("localhost:5000/team/app"),
            "localhost:5000/team/app:latest"
        );
        assert_eq!(r("localhost:5000/app:v2"), "localhost:5000/app:v2");
        assert_eq!(r("my_app-x.y__z"), "my_app-x.y__z:latest");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "a:",
            ":tag",
            "a/",
            "-a",
            "a..b",
            "a___b",
            "a:-x",
            "a@sha256:00",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reference_filter_patterns() {
        let r = Reference::parse("localhost:5000/team/app:v1").unwrap();
        assert!(r.matches("localhost:5000/team/app"));
        assert!(r.matches("localhost:5000/team/app:v1"));
        assert!(r.matches("localhost:5000/team/*"));
        assert!(r.matches("localhost:5000/team/app:v?"));
        assert!(r.matches("*/*/app:[uv][0-9]"));
        assert!(!r.matches("*/app"));
        assert!(!r.matches("localhost:5000/team/app:v2"));
        let b = Reference::parse("busybox").unwrap();
        assert!(b.matches("busybox"));
        assert!(b.matches("busy*"));
        assert!(b.matches("b[^a]sybox:latest"));
        assert!(!b.matches("b[a]sybox"));
        assert!(!b.matches("busybox:1*"));
        assert!(!b.matches("[busybox"));
        assert!(b.matches("busy\\box"));
    }

    #[test]
    fn from_parts() {
        let r = Reference::from_parts("busybox", Some("v1")).unwrap();
        assert_eq!(r.to_string(), "busybox:v1");
        let r = Reference::from_parts("busybox:v2", None).unwrap();
        assert_eq!(r.to_string(), "busybox:v2");
        assert!(Reference::from_parts("busybox:v2", Some("v1")).is_err());
        assert!(Reference::from_parts("busybox", Some("bad tag")).is_err());
    }
}
