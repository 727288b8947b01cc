//! The image config as stored (the JSON whose sha256 is the image id) and
//! the shapes of `GET /images/json` and `GET /images/{name}/json`, with
//! dockerd's field names.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// docker's `strslice`: a list that old images sometimes store as a string.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<Either>::deserialize(d)?.map(|e| match e {
        Either::One(s) => vec![s],
        Either::Many(v) => v,
    }))
}

/// The run configuration an image carries (docker's `container.Config`),
/// used for the image config's `config` and in inspect output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RunConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, EmptyObject>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "string_or_list")]
    pub cmd: Option<Vec<String>>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, EmptyObject>>,
    pub working_dir: String,
    #[serde(deserialize_with = "string_or_list")]
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// `{}` — the value type of docker's port and volume sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The image config JSON (docker's image v1 / OCI config). Only the fields
/// Berth uses are typed; the stored bytes are kept as they came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// Go RFC3339Nano.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(default)]
    pub os: String,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An entry of `GET /images/json` (`docker images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    pub id: String,
    pub parent_id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub size: i64,
    pub shared_size: i64,
    pub virtual_size: i64,
    pub labels: BTreeMap<String, String>,
    pub containers: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub name: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub typ: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageMetadata {
    /// RFC3339Nano; Go's zero time when never tagged.
    pub last_tag_time: String,
}

/// `GET /images/{name}/json` (`docker image inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    /// RFC3339Nano.
    pub created: String,
    pub container: String,
    pub container_config: RunConfig,
    pub docker_version: String,
    pub author: String,
    pub config: RunConfig,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub size: i64,
    pub virtual_size: i64,
    pub graph_driver: GraphDriver,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    pub metadata: ImageMetadata,
}

/// An entry of `GET /images/{name}/history` (`docker history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    /// The image id for the newest entry, `<missing>` for the others.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    /// The image's names, on the newest entry only.
    pub tags: Option<Vec<String>>,
    pub size: i64,
    pub comment: String,
}

/// One line of the `DELETE /images/{name}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_accepts_string_cmd_and_writes_docker_fields() {
        let c: RunConfig =
            serde_json::from_str(r#"{"Cmd":"/bin/sh","Env":["A=1"],"ExposedPorts":{"80/tcp":{}}}"#)
                .unwrap();
        assert_eq!(c.cmd, Some(vec!["/bin/sh".to_string()]));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["Cmd"], serde_json::json!(["/bin/sh"]));
        assert_eq!(v["Entrypoint"], serde_json::Value::Null);
        assert_eq!(v["WorkingDir"], "");
        assert_eq!(v["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
        let empty = serde_json::to_value(RunConfig::default()).unwrap();
        assert!(empty.get("ExposedPorts").is_none());
        assert_eq!(empty["Labels"], serde_json::Value::Null);
    }

    #[test]
    fn delete_items_are_docker_shaped() {
        let items = vec![
            DeleteItem::Untagged("busybox:latest".into()),
            DeleteItem::Deleted("sha256:ab".into()),
        ];
        assert_eq!(
            serde_json::to_string(&items).unwrap(),
            r#"[{"Untagged":"busybox:latest"},{"Deleted":"sha256:ab"}]"#
        );
    }
}
