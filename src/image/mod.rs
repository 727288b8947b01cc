//! The minimum image store that docker import/load and docker run need.
//!
//! Images are unpacked root filesystems under `<root>/<sha256 hex>/rootfs`
//! (`<root>` is `<data-root>/image`), each with its config JSON beside it;
//! names live in `<root>/repositories.json`. There are no shared layers: a
//! container's overlay uses the whole image rootfs as its lower directory.

mod changes;
mod extract;
pub mod reference;
mod store;
pub mod types;
mod view;

use std::path::PathBuf;

use netcontroller::error::{ErrorKind, Kind};

pub use changes::run_config_from_changes;
pub use reference::Reference;
pub use store::{ImageStore, ImportOptions, LoadedImage};
pub use types::{DeleteItem, HistoryItem, ImageConfig, ImageInspect, ImageSummary, RunConfig};
pub use view::Image;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("multiple images match {0:?}, give more of the id")]
    Ambiguous(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid reference format: {0:?}")]
    InvalidReference(String),
    /// A `docker import --change` instruction berthd cannot apply.
    #[error("{0}")]
    InvalidChange(String),
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Kind for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            // An id prefix matching several images is not found, as dockerd
            // answers it (moby: NotFound("ambiguous reference")).
            ImageError::NotFound(_) | ImageError::Ambiguous(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::InvalidReference(_)
            | ImageError::InvalidChange(_)
            | ImageError::InvalidArchive(_) => ErrorKind::InvalidArgument,
            ImageError::Io { .. } => ErrorKind::System,
        }
    }
}
