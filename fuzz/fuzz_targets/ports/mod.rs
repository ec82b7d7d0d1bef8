//! The file port of the targets that drive the whole app (`app_http`, `polling_session`):
//! no disk, no IO. Owns no parsing and must not panic on any input.

use std::path::{Path, PathBuf};

use asf::stream::{ready, Answer, Files, OpenError, OpenedFile, PathError, StreamSession};

/// Stores every notified path as given and opens none: a notify is registered, and a join
/// of a registered id finds its file missing (no stream starts, the join is answered).
#[derive(Debug)]
pub struct PathsOnly;

impl Files for PathsOnly {
    fn resolve(&self, filepath: &str) -> Answer<Result<PathBuf, PathError>> {
        ready(Ok(PathBuf::from(filepath)))
    }

    fn open(&self, path: &Path) -> Answer<Result<OpenedFile, OpenError>> {
        ready(Err(OpenError::Missing(path.to_path_buf())))
    }

    fn follow(&self, _session: std::sync::Weak<StreamSession>) {}
}
