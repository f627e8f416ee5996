//! The broker: what the front ends (the API, the pages, the CLI) ask of elevate. Each action
//! loads and locks what it needs once, calls the pure core (`workflow`, `policy`, `ssh::cert`)
//! and writes the outcome with its audit record in one store transaction.

pub mod db;
pub mod policy;
pub mod service;
pub mod ssh;
