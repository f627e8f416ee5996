//! Files holding secrets (TLS keys, the CLI's saved token) are written readable by their owner
//! only: `fs::write` would leave them 0644.

use std::io::Write;
use std::path::Path;

/// Creates or replaces `path` with mode 0600 (also when it existed with wider permissions).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}
