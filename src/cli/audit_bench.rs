//! `elevate bench audit`: how fast an export is verified offline. Writes a signed export of N
//! events (a checkpoint every 1,000, a signed head last) to a temporary file, then runs the real
//! verifier over it on one thread and on all cores.

use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, PrivateKey};
use uuid::Uuid;

use crate::audit::checkpoint::{Checkpoint, Kind};
use crate::audit::verify::{LineRef, to_line, verify_reader_threads};
use crate::audit::{GENESIS_HASH, Record};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Args)]
pub struct AuditBench {
    /// Events in the generated export.
    #[arg(long, default_value_t = 1_000_000)]
    events: i64,
    /// A checkpoint every this many events.
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: i64,
}

/// Events shaped like real ones (actor, request id, origin, a few details).
fn write_export(
    path: &std::path::Path,
    n: i64,
    every: i64,
) -> anyhow::Result<Vec<ssh_key::PublicKey>> {
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let kid = Uuid::now_v7();
    let tenant_id = Uuid::now_v7();
    let at = crate::clock::truncate(SystemClock.now());
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let mut prev = GENESIS_HASH.to_vec();
    for seq in 1..=n {
        let mut r = Record {
            tenant_id,
            seq,
            at,
            actor: "user:alice@example.com".into(),
            action: "request.approved".into(),
            subject: "prod-shell".into(),
            request_id: Some(Uuid::now_v7()),
            ip: Some("192.0.2.10".into()),
            user_agent: Some("elevate-cli/0.1".into()),
            details: sqlx::types::Json(serde_json::json!({
                "approvals": 1, "comment": "looks fine", "policy_version": 3, "state": "active"
            })),
            prev_hash: prev,
            hash: Vec::new(),
        };
        r.hash = r.compute_hash()?.to_vec();
        writeln!(out, "{}", to_line(LineRef::Event(&r))?)?;
        if seq % every == 0 {
            let c = Checkpoint::unsigned(tenant_id, seq, &r.hash, at, kid)
                .sign(Kind::Checkpoint, &key)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            writeln!(out, "{}", to_line(LineRef::Checkpoint(&c))?)?;
        }
        prev = r.hash;
    }
    let mut h = Checkpoint::unsigned(tenant_id, n, &prev, at, kid);
    h.checkpoints = Some((n / every) as u64);
    let h = h
        .sign(Kind::Head, &key)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    writeln!(out, "{}", to_line(LineRef::Head(&h))?)?;
    out.flush()?;
    Ok(vec![key.public_key().clone()])
}

pub fn run(args: AuditBench) -> anyhow::Result<()> {
    if args.events < 1 || args.checkpoint_every < 1 {
        bail!("--events and --checkpoint-every must be at least 1");
    }
    let path = std::env::temp_dir().join(format!("elevate-bench-audit-{}.jsonl", Uuid::now_v7()));
    let started = Instant::now();
    let keys = write_export(&path, args.events, args.checkpoint_every)
        .with_context(|| format!("writing {}", path.display()))?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "wrote {} events ({:.0} MB) in {:.1} s",
        args.events,
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = vec![1];
    if cores > 1 {
        runs.push(cores);
    }
    for threads in runs {
        let file = std::fs::File::open(&path)?;
        let started = Instant::now();
        let result = verify_reader_threads(
            BufReader::with_capacity(1 << 20, file),
            keys.clone(),
            threads,
        )?;
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(s) => println!(
                "verified on {threads} thread(s): {} events, {} checkpoints in {secs:.2} s = {:.0} events/s",
                s.events,
                s.checkpoints,
                s.events as f64 / secs
            ),
            Err(b) => bail!("the generated export did not verify: {b}"),
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
