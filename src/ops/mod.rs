//! Operations: backup, restore and the restore drill (issue 20). The CLI (`src/cli/backup.rs`)
//! parses flags and prints; everything it does is here, so tests can call it without a process.

pub mod backup;
pub mod drill;
