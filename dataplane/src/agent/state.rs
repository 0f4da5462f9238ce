//! What the agent keeps on disk, next to the queue in `data_dir`:
//!
//! - `gateway_id`: the gateway's stable id (a UUID generated on first start
//!   unless `control_plane.gateway_id` is configured);
//! - `agent_state.json`: the last desired state the gateway accepted, in the
//!   reduced form it can apply ([`Target`]), so a restarted gateway comes
//!   back with its last known state even when the control plane is down.
//!
//! Both are written atomically (temporary file, `fsync`, rename, directory
//! `fsync`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::config::validate_gateway_id;
use super::protocol::Target;

/// Name of the gateway id file in `data_dir`.
pub const GATEWAY_ID_FILE: &str = "gateway_id";

/// Name of the persisted desired-state file in `data_dir`.
pub const STATE_FILE: &str = "agent_state.json";

/// The gateway id: `configured` when set, else the one kept in
/// `<data_dir>/gateway_id`, created (a new UUID) when absent.
pub fn load_or_create_gateway_id(
    data_dir: &Path,
    configured: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let path = data_dir.join(GATEWAY_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            validate_gateway_id(&id).map_err(|message| {
                anyhow::anyhow!(
                    "{}: invalid gateway id ({message}); fix the file or delete it to get a new id",
                    path.display()
                )
            })?;
            Ok(id)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            write_atomically(&path, format!("{id}\n").as_bytes())?;
            tracing::info!(gateway_id = %id, file = %path.display(), "generated a new gateway id");
            Ok(id)
        }
        Err(err) => Err(anyhow::anyhow!("reading {}: {err}", path.display())),
    }
}

/// Reads the persisted target; `None` when there is none. A file that
/// cannot be parsed is reported and ignored (the control plane sends the
/// state again on connection).
pub fn load_target(data_dir: &Path) -> Option<Target> {
    let path = data_dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "cannot read the persisted desired state; ignoring it");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(target) => Some(target),
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "unreadable persisted desired state; ignoring it");
            None
        }
    }
}

/// Persists `target` (durable on return).
pub fn save_target(data_dir: &Path, target: &Target) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(target)?;
    write_atomically(&data_dir.join(STATE_FILE), &bytes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    // Owner-only: the target may carry cluster credentials.
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?
    };
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::AuthHeader;

    #[test]
    fn gateway_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = load_or_create_gateway_id(&data, None).unwrap();
        assert!(uuid::Uuid::parse_str(&first).is_ok(), "{first}");
        let second = load_or_create_gateway_id(&data, None).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            load_or_create_gateway_id(&data, Some("gw-1")).unwrap(),
            "gw-1"
        );
    }

    #[test]
    fn corrupt_gateway_id_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GATEWAY_ID_FILE), "not valid/\n").unwrap();
        let err = load_or_create_gateway_id(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains(GATEWAY_ID_FILE), "{err}");
    }

    #[test]
    fn target_round_trips_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_target(dir.path()), None);
        let target = Target {
            version: 7,
            task_id: Some("t-1".into()),
            paused: Some(true),
            reversed: Some(false),
            max_hold_ms: Some(3000),
            backup_auth: Some(Some(AuthHeader("Basic dTpw".into()))),
            ..Target::default()
        };
        save_target(dir.path(), &target).unwrap();
        assert_eq!(load_target(dir.path()), Some(target));
        // It may hold credentials: readable by the owner only.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        std::fs::write(dir.path().join(STATE_FILE), b"{").unwrap();
        assert_eq!(load_target(dir.path()), None);
    }
}
