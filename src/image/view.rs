//! An image as callers see it, and the API shapes built from it
//! (`docker images`, `docker image inspect`, `docker history`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::store::rfc3339;
use super::types::{
    GraphDriver, HistoryItem, ImageConfig, ImageInspect, ImageMetadata, ImageSummary,
    InspectRootFs, RunConfig,
};

/// Go's zero time, which dockerd prints for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// An image as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<hex>`.
    pub id: String,
    pub config: ImageConfig,
    /// `repo:tag` names, sorted.
    pub repo_tags: Vec<String>,
    /// Bytes of the unpacked rootfs.
    pub size: u64,
    pub last_tag_time: Option<DateTime<Utc>>,
    /// Content bytes of each layer, bottom first; empty when not recorded.
    pub layer_sizes: Vec<u64>,
    /// The unpacked root filesystem (an overlay lower directory).
    pub rootfs: PathBuf,
}

impl Image {
    /// The config's creation time, when it has a valid one.
    pub fn created(&self) -> Option<DateTime<Utc>> {
        let text = self.config.created.as_deref()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The `GET /images/json` entry.
    pub fn summary(&self) -> ImageSummary {
        let size = i64::try_from(self.size).unwrap_or(i64::MAX);
        ImageSummary {
            id: self.id.clone(),
            parent_id: String::new(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: Vec::new(),
            created: self.created().map_or(0, |t| t.timestamp()),
            size,
            shared_size: -1,
            virtual_size: size,
            labels: self
                .config
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default(),
            containers: -1,
        }
    }

    /// The `GET /images/{name}/json` answer.
    pub fn inspect(&self) -> ImageInspect {
        let size = i64::try_from(self.size).unwrap_or(i64::MAX);
        ImageInspect {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: Vec::new(),
            parent: String::new(),
            comment: self.config.comment.clone().unwrap_or_default(),
            created: self
                .config
                .created
                .clone()
                .unwrap_or_else(|| ZERO_TIME.to_string()),
            container: String::new(),
            container_config: RunConfig::default(),
            docker_version: self.config.docker_version.clone().unwrap_or_default(),
            author: self.config.author.clone().unwrap_or_default(),
            config: self.config.config.clone().unwrap_or_default(),
            architecture: self.config.architecture.clone(),
            variant: self.config.variant.clone(),
            os: self.config.os.clone(),
            size,
            virtual_size: size,
            // One unpacked directory per image, as docker's vfs driver.
            graph_driver: GraphDriver {
                name: "vfs".to_string(),
                data: BTreeMap::from([(
                    "RootDir".to_string(),
                    self.rootfs.to_string_lossy().into_owned(),
                )]),
            },
            root_fs: InspectRootFs {
                typ: "layers".to_string(),
                layers: self.config.rootfs.diff_ids.clone(),
            },
            metadata: ImageMetadata {
                last_tag_time: self
                    .last_tag_time
                    .as_ref()
                    .map_or_else(|| ZERO_TIME.to_string(), rfc3339),
            },
        }
    }

    /// The `GET /images/{name}/history` answer, newest first, as dockerd
    /// builds it: one entry per history record, a non-empty one taking the
    /// next layer's size; the newest carries the image id and its tags,
    /// the older ones `<missing>` (they are no images of their own).
    pub fn history(&self) -> Vec<HistoryItem> {
        let mut layers = self.layer_sizes.iter();
        let mut items: Vec<HistoryItem> = self
            .config
            .history
            .iter()
            .map(|h| HistoryItem {
                id: "<missing>".to_string(),
                created: h
                    .created
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map_or(0, |t| t.timestamp()),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: None,
                size: if h.empty_layer {
                    0
                } else {
                    layers
                        .next()
                        .map_or(0, |s| i64::try_from(*s).unwrap_or(i64::MAX))
                },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect();
        items.reverse();
        if let Some(newest) = items.first_mut() {
            newest.id = self.id.clone();
            newest.tags = (!self.repo_tags.is_empty()).then(|| self.repo_tags.clone());
        }
        items
    }
}
