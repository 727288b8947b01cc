//! Docker's `filters` query parameter: a JSON map from filter name to values,
//! either `{"name":{"x":true}}` or the legacy `{"name":["x"]}`.

use std::collections::{BTreeMap, BTreeSet};

use netcontroller::error::{ErrorKind, Kind};
use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FiltersError {
    #[error("invalid filters: {0}")]
    Malformed(String),
    /// dockerd's words for a filter name the endpoint does not know.
    #[error("invalid filter '{0}'")]
    UnknownName(String),
    #[error("invalid filter '{name}={value}'")]
    BadValue { name: String, value: String },
    /// An endpoint's own refusal of a value, in dockerd's words for it.
    #[error("{0}")]
    Refused(String),
}

impl Kind for FiltersError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// Parsed filters: name -> set of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

#[derive(Deserialize)]
#[serde(untagged)]
enum Values {
    Map(BTreeMap<String, bool>),
    List(Vec<String>),
}

impl Filters {
    /// Parses the parameter's JSON; an empty string means no filters.
    pub fn parse(raw: &str) -> Result<Filters, FiltersError> {
        if raw.trim().is_empty() {
            return Ok(Filters::default());
        }
        let map: BTreeMap<String, Values> =
            serde_json::from_str(raw).map_err(|e| FiltersError::Malformed(e.to_string()))?;
        Ok(Filters(
            map.into_iter()
                .map(|(name, values)| {
                    let set = match values {
                        // dockerd keeps a value whatever its bool says.
                        Values::Map(m) => m.into_keys().collect(),
                        Values::List(l) => l.into_iter().collect(),
                    };
                    (name, set)
                })
                .collect(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Refuses filter names outside `accepted`.
    pub fn validate(&self, accepted: &[&str]) -> Result<(), FiltersError> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(name) => Err(FiltersError::UnknownName(name.clone())),
            None => Ok(()),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The values given for `name`, sorted.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.0
            .get(name)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// True when `name` is not filtered on, or `value` is one of its values.
    pub fn exact_match(&self, name: &str, value: &str) -> bool {
        self.0.get(name).is_none_or(|s| s.contains(value))
    }

    /// True when `name` is not filtered on, or one of its values is a prefix
    /// of `value` (how ids are matched: `id=3f2a`).
    pub fn prefix_match(&self, name: &str, value: &str) -> bool {
        self.0
            .get(name)
            .is_none_or(|s| s.iter().any(|v| value.starts_with(v.as_str())))
    }

    /// True when `name` is not filtered on, or one of its values equals
    /// `value` or, read as a regular expression, matches somewhere in it:
    /// dockerd's `Match`, used for network names and ids (`name=^web$`,
    /// `name=front`, `id=3f2a`). A value that is no valid expression only
    /// matches exactly, as dockerd skips it.
    pub fn regex_match(&self, name: &str, value: &str) -> bool {
        self.0.get(name).is_none_or(|s| {
            s.iter().any(|want| {
                want == value || regex::Regex::new(want).is_ok_and(|re| re.is_match(value))
            })
        })
    }

    /// True when every `key` or `key=value` given for `name` is in `labels`
    /// (docker's label filter semantics).
    pub fn match_labels(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.0.get(name).is_none_or(|s| {
            s.iter().all(|want| match want.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(want.as_str()),
            })
        })
    }

    /// True when `name` is given and one of its `key` or `key=value` values
    /// is in `labels` (the exclusion filters, `label!`).
    pub fn any_label_matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.0.get(name).is_some_and(|s| {
            s.iter().any(|want| match want.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(want.as_str()),
            })
        })
    }

    /// A boolean filter (`dangling=true`): `None` when not given; docker's
    /// spellings `true/1` and `false/0`; conflicting values are refused.
    pub fn bool_value(&self, name: &str) -> Result<Option<bool>, FiltersError> {
        let Some(set) = self.0.get(name) else {
            return Ok(None);
        };
        let mut result = None;
        for value in set {
            let b = match value.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(FiltersError::BadValue {
                        name: name.into(),
                        value: value.clone(),
                    })
                }
            };
            if result.is_some_and(|r| r != b) {
                return Err(FiltersError::BadValue {
                    name: name.into(),
                    value: value.clone(),
                });
            }
            result = Some(b);
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_json_forms_parse_alike() {
        let modern =
            Filters::parse(r#"{"name":{"web":true,"db":true},"driver":{"bridge":true}}"#).unwrap();
        let legacy = Filters::parse(r#"{"name":["web","db"],"driver":["bridge"]}"#).unwrap();
        assert_eq!(modern, legacy);
        assert_eq!(modern.values("name"), ["db", "web"]);
        assert!(Filters::parse("").unwrap().is_empty());
    }

    #[test]
    fn malformed_filters_are_invalid_arguments() {
        for bad in ["{", "[]", r#"{"name":"web"}"#, r#"{"name":{"web":"yes"}}"#] {
            let err = Filters::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn validate_names_the_unknown_filter() {
        let f = Filters::parse(r#"{"name":["a"],"colour":["red"]}"#).unwrap();
        assert_eq!(
            f.validate(&["name", "id"]).unwrap_err().to_string(),
            "invalid filter 'colour'"
        );
        assert!(f.validate(&["name", "colour"]).is_ok());
    }

    #[test]
    fn matching() {
        let f =
            Filters::parse(r#"{"id":["3f2a"],"label":["env","tier=web"],"name":["x"]}"#).unwrap();
        assert!(f.prefix_match("id", "3f2a9911"));
        assert!(!f.prefix_match("id", "993f2a"));
        assert!(f.exact_match("name", "x"));
        assert!(!f.exact_match("name", "xy"));
        assert!(f.exact_match("driver", "anything"));

        let re = Filters::parse(r#"{"name":["^web$","(unclosed"],"id":["^3f"]}"#).unwrap();
        assert!(re.regex_match("name", "web"));
        assert!(!re.regex_match("name", "webs"));
        assert!(re.regex_match("name", "(unclosed"));
        assert!(re.regex_match("id", "3f2a"));
        assert!(!re.regex_match("id", "a3f2"));
        assert!(re.regex_match("label", "unfiltered"));

        let mut labels = BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]);
        assert!(f.match_labels("label", &labels));
        labels.insert("tier".into(), "db".into());
        assert!(!f.match_labels("label", &labels));
    }

    #[test]
    fn bool_filters() {
        let f = Filters::parse(r#"{"dangling":["true"],"x":["maybe"],"y":["1","false"]}"#).unwrap();
        assert_eq!(f.bool_value("dangling"), Ok(Some(true)));
        assert_eq!(f.bool_value("absent"), Ok(None));
        assert!(f.bool_value("x").is_err());
        assert!(f.bool_value("y").is_err());
    }
}
