//! The errors of image pulls, archives and pushes, with their kind kept.

use crate::artifacts::ArtifactError;
use crate::error::ErrorKind;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "{image}: the image is not pinned by digest; kubeforge pulls images only by the digest of their index (repo:tag@sha256:<64 hex>)"
    )]
    Unpinned { image: String },
    #[error(
        "{image}: digest mismatch for the {what}: expected {expected}, got {actual}; nothing was stored"
    )]
    DigestMismatch {
        image: String,
        /// `index`, `manifest for linux/arm64`, `layer`, `config`.
        what: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{image}: the {what} {digest} is {actual} bytes long, not the {expected} its descriptor gives; nothing was stored"
    )]
    SizeMismatch {
        image: String,
        what: String,
        digest: String,
        expected: u64,
        actual: String,
    },
    #[error("{image}: the index {digest} has no manifest for {platform} (it has: {available})")]
    NoPlatform {
        image: String,
        digest: String,
        platform: String,
        available: String,
    },
    /// A document the registry sent that kubeforge cannot use.
    #[error("{image}: {message}")]
    Invalid { image: String, message: String },
    /// Offline (bundle) mode: the blob is not in the bundle's blob directory.
    #[error(
        "{image}: the {what} {digest} is not in the bundle ({}); run `kubeforge artifacts fetch` again to add it",
        dir.display()
    )]
    NotInBundle {
        image: String,
        what: String,
        digest: String,
        dir: PathBuf,
    },
    #[error("authentication to registry {registry} failed: {message}")]
    Auth { registry: String, message: String },
    #[error("{image}: the {what} is not in registry {registry} (HTTP 404)")]
    NotFound {
        image: String,
        registry: String,
        what: String,
    },
    #[error("registry {registry}: {action}: HTTP {status}{detail}")]
    Http {
        registry: String,
        action: String,
        status: u16,
        /// `: <the registry's error message>` or empty.
        detail: String,
    },
    #[error("cannot reach registry {registry}: {message}")]
    Network { registry: String, message: String },
    /// Bad options: an unreadable CA file, a mirror that is not a base URL, plain HTTP not
    /// allowed.
    #[error("{message}")]
    Config { message: String },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    /// The stream an archive is written to failed (the caller knows where it goes).
    #[error("cannot write the image archive: {message}")]
    ArchiveWrite { message: String },
    #[error(transparent)]
    Cache(#[from] ArtifactError),
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Unpinned { .. }
            | ImageError::DigestMismatch { .. }
            | ImageError::SizeMismatch { .. } => ErrorKind::Policy,
            ImageError::NoPlatform { .. } | ImageError::Invalid { .. } => ErrorKind::Parse,
            ImageError::Auth { .. } => ErrorKind::Auth,
            ImageError::NotFound { .. } | ImageError::Http { .. } => ErrorKind::RemoteFailed,
            ImageError::Network { .. } => ErrorKind::Unreachable,
            ImageError::Config { .. }
            | ImageError::Io { .. }
            | ImageError::ArchiveWrite { .. }
            | ImageError::NotInBundle { .. }
            | ImageError::Cache(_) => ErrorKind::Local,
        }
    }

    /// Whether another attempt may succeed (the network, a busy registry).
    pub fn is_transient(&self) -> bool {
        match self {
            ImageError::Network { .. } => true,
            ImageError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

pub(crate) fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
