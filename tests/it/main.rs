#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

//! One integration test binary (faster to link on two cores). Every test makes its own store —
//! a SQLite file in a temp dir or a fresh Postgres database — so tests run in parallel.

mod architecture;
mod audit;
mod audit_cut;
mod audit_demo;
mod backup;
mod browser;
mod cli;
mod cli_client;
mod db_cli;
mod db_fixtures;
mod db_logins;
mod doctor;
mod faults;
mod fixtures;
mod hardening_edge;
mod helpers;
mod http;
mod input_rules;
mod listing;
mod metrics;
mod notify;
mod offboard;
mod openapi;
mod pages;
mod passkeys;
mod policy;
mod replicas;
mod rls;
mod sessions;
mod signin;
mod ssh;
mod sshd;
mod sso;
mod step_up;
mod store;
mod transactions;
mod workflow;
