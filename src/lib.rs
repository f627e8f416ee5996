//! elevate: a just-in-time privileged access broker. See `DESIGN.md` in the shared docs and the
//! README for the architecture; modules are laid out by domain.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db_targets;
pub mod demo;
pub mod doctor;
pub mod duration;
pub mod error;
pub mod files;
pub mod model;
pub mod notify;
pub mod ops;
pub mod passkeys;
pub mod policy;
pub mod reaper;
pub mod signing_keys;
pub mod ssh;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod web;
pub mod workflow;
