//! Verification of an exported log (JSON lines, see [`super::export`]) or of the live store:
//! sequence continuity from 1, every `prev_hash` link, every event's hash over its canonical
//! form, every checkpoint's signature against the tenant's public key(s) and its match with the
//! chain, and — for exports — the signed head on the last line, so a cut-off file is caught.
//! The first problem is reported with its seq and what is wrong.
//!
//! Each line is also checked to be byte-for-byte the canonical serialisation of what it parses
//! to, so an edit that changes no meaning (upper-case hex, reordered keys, added spaces) is still
//! an edit, and a single changed byte is always found.
//!
//! Speed: parsing and hashing lines is independent per line (each event carries the hash it
//! links to), so it runs on all cores in batches; only the cheap link/sequence checks are serial.

use std::io::BufRead;

use ssh_key::PublicKey;
use uuid::Uuid;

use super::checkpoint::{Checkpoint, Kind};
use super::{GENESIS_HASH, Record};

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    Event(Record),
    Checkpoint(Checkpoint),
    Head(Checkpoint),
}

/// The same, borrowed, for writing: the exporter and the canonical-form check share it.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LineRef<'a> {
    Event(&'a Record),
    Checkpoint(&'a Checkpoint),
    Head(&'a Checkpoint),
}

/// Where a log stops being trustworthy: the first broken link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The seq of the event or checkpoint at fault (for a line that does not parse: the seq
    /// of the last good event before it).
    pub seq: i64,
    /// 1-based line of the export; 0 when verifying the live store.
    pub line: u64,
    pub what: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "first broken link at seq {}", self.seq)?;
        if self.line > 0 {
            write!(f, " (line {})", self.line)?;
        }
        write!(f, ": {}", self.what)
    }
}

impl std::error::Error for Broken {}

/// What a clean log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tenant_id: Option<Uuid>,
    pub events: u64,
    pub checkpoints: u64,
    pub head_seq: i64,
    pub head_hash: Vec<u8>,
    /// The seq of the last signed statement (checkpoint or head) covering the chain.
    pub signed_through: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {} events, {} checkpoints, head seq {} hash {}, signed through seq {}",
            self.events,
            self.checkpoints,
            self.head_seq,
            hex::encode(&self.head_hash),
            self.signed_through
        )
    }
}

/// A line after the parallel stage: parsed, canonical-checked and (for events) hashed.
enum Parsed {
    Event(Box<Record>, Option<[u8; 32]>),
    Checkpoint(Checkpoint),
    Head(Checkpoint),
    Bad(String),
}

/// Canonical lines start with their type, so the type picks the struct to parse the rest into
/// (cheaper than serde's buffering of internally tagged enums; the verifier parses a million
/// lines in seconds).
const PREFIXES: [(&str, LineKind); 3] = [
    (r#"{"type":"event","#, LineKind::Event),
    (r#"{"type":"checkpoint","#, LineKind::Checkpoint),
    (r#"{"type":"head","#, LineKind::Head),
];

#[derive(Clone, Copy)]
enum LineKind {
    Event,
    Checkpoint,
    Head,
}

fn parse(text: &str) -> Parsed {
    let Some((rest, kind)) = PREFIXES
        .iter()
        .find_map(|(p, k)| text.strip_prefix(p).map(|rest| (rest, *k)))
    else {
        return Parsed::Bad(
            "not a valid export line: it does not start with an event, checkpoint or head type"
                .into(),
        );
    };
    let body = format!("{{{rest}");
    fn canonical<T: serde::Serialize>(v: &T, body: &str) -> bool {
        serde_json::to_string(v).is_ok_and(|c| c == body)
    }
    const EDITED: &str = "not in canonical form (the line was edited)";
    match kind {
        LineKind::Event => match serde_json::from_str::<Record>(&body) {
            Ok(r) if canonical(&r, &body) => {
                let computed = r.compute_hash().ok();
                Parsed::Event(Box::new(r), computed)
            }
            Ok(_) => Parsed::Bad(EDITED.into()),
            Err(e) => Parsed::Bad(format!("not a valid export line: {e}")),
        },
        LineKind::Checkpoint | LineKind::Head => match serde_json::from_str::<Checkpoint>(&body) {
            Ok(c) if canonical(&c, &body) => match kind {
                LineKind::Head => Parsed::Head(c),
                _ => Parsed::Checkpoint(c),
            },
            Ok(_) => Parsed::Bad(EDITED.into()),
            Err(e) => Parsed::Bad(format!("not a valid export line: {e}")),
        },
    }
}

/// A point the chain must pass through, known from outside the log being verified: a checkpoint
/// published earlier (kept by an auditor, delivered to a sink) or a replica's anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub seq: i64,
    pub hash: Vec<u8>,
    /// What vouches for it, as the report names it ("the published checkpoint").
    pub what: String,
}

/// Published checkpoints (JSON lines as `GET /t/{tenant}/audit/checkpoint` serves them, or
/// checkpoint lines of an export) as pins; each must be signed by one of `trusted`.
pub fn parse_pins(text: &str, trusted: &[PublicKey]) -> Result<Vec<Pin>, String> {
    let mut pins = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let c = match serde_json::from_str::<Line>(line) {
            Ok(Line::Checkpoint(c)) => c,
            Ok(_) => return Err(format!("line {}: not a checkpoint", i + 1)),
            Err(e) => return Err(format!("line {}: not a checkpoint: {e}", i + 1)),
        };
        c.verify(Kind::Checkpoint, trusted)
            .map_err(|e| format!("line {}: checkpoint for seq {} refused: {e}", i + 1, c.seq))?;
        pins.push(Pin {
            seq: c.seq,
            hash: c.head_hash,
            what: "the published checkpoint".into(),
        });
    }
    Ok(pins)
}

/// The serial part of verification: a fold over lines in order.
#[derive(Debug, Clone)]
pub struct Verifier {
    trusted: Vec<PublicKey>,
    require_head: bool,
    tenant_id: Option<Uuid>,
    next_seq: i64,
    prev_hash: Vec<u8>,
    line: u64,
    events: u64,
    checkpoints: u64,
    signed_through: i64,
    head_seen: bool,
    pins: std::collections::BTreeMap<i64, Pin>,
}

impl Verifier {
    /// `require_head`: the log must end with a signed head (exports); the live store has none.
    pub fn new(trusted: Vec<PublicKey>, require_head: bool) -> Self {
        Verifier {
            trusted,
            require_head,
            tenant_id: None,
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_vec(),
            line: 0,
            events: 0,
            checkpoints: 0,
            signed_through: 0,
            head_seen: false,
            pins: Default::default(),
        }
    }

    /// Points the chain must pass through (see [`Pin`]); checked as events go by and at the end.
    pub fn pin(mut self, pins: impl IntoIterator<Item = Pin>) -> Self {
        for p in pins {
            self.pins.insert(p.seq, p);
        }
        self
    }

    fn broken(&self, seq: i64, what: impl Into<String>) -> Broken {
        Broken {
            seq,
            line: self.line,
            what: what.into(),
        }
    }

    fn tenant(&mut self, seq: i64, tenant_id: Uuid) -> Result<(), Broken> {
        match self.tenant_id {
            None => {
                self.tenant_id = Some(tenant_id);
                Ok(())
            }
            Some(t) if t == tenant_id => Ok(()),
            Some(t) => Err(self.broken(
                seq,
                format!("belongs to tenant {tenant_id}, the rest of the log to {t}"),
            )),
        }
    }

    /// An event; `computed` is its hash if already computed (else it is computed here).
    pub fn event(&mut self, r: &Record, computed: Option<[u8; 32]>) -> Result<(), Broken> {
        if self.head_seen {
            return Err(self.broken(r.seq, "an event after the signed head"));
        }
        self.tenant(r.seq, r.tenant_id)?;
        if r.seq != self.next_seq {
            return Err(self.broken(
                r.seq,
                format!(
                    "sequence gap or reordering: expected event {}",
                    self.next_seq
                ),
            ));
        }
        if r.prev_hash != self.prev_hash {
            return Err(self.broken(
                r.seq,
                "prev_hash does not match the previous event's hash (link broken)",
            ));
        }
        let computed = match computed {
            Some(h) => Some(h),
            None => r.compute_hash().ok(),
        };
        if computed.as_ref().map(|h| h.as_slice()) != Some(r.hash.as_slice()) {
            return Err(self.broken(r.seq, "content does not match its hash (event edited)"));
        }
        if let Some(p) = self.pins.get(&r.seq)
            && p.hash != r.hash
        {
            return Err(self.broken(
                r.seq,
                format!(
                    "{} at seq {} disagrees with the chain: events up to seq {} were rewritten",
                    p.what, p.seq, p.seq
                ),
            ));
        }
        self.next_seq += 1;
        self.prev_hash.clone_from(&r.hash);
        self.events += 1;
        Ok(())
    }

    /// A checkpoint (or the export's signed head): signed by a trusted key and matching the
    /// chain at the point it appears.
    pub fn signed(&mut self, c: &Checkpoint, kind: Kind) -> Result<(), Broken> {
        let what = match kind {
            Kind::Checkpoint => "checkpoint",
            Kind::Head => "signed head",
        };
        if self.head_seen {
            return Err(self.broken(c.seq, format!("a {what} after the signed head")));
        }
        self.tenant(c.seq, c.tenant_id)?;
        if let Err(e) = c.verify(kind, &self.trusted) {
            return Err(self.broken(c.seq, format!("{what} refused: {e}")));
        }
        let last = self.next_seq - 1;
        if c.seq != last {
            return Err(self.broken(
                c.seq,
                format!(
                    "{what} for seq {} found after event {last} (moved or events missing)",
                    c.seq
                ),
            ));
        }
        if c.head_hash != self.prev_hash {
            return Err(self.broken(
                c.seq,
                format!(
                    "{what} does not match the chain: an event after seq {} up to {} was altered and re-hashed",
                    self.signed_through, c.seq
                ),
            ));
        }
        if kind == Kind::Head && c.checkpoints != Some(self.checkpoints) {
            return Err(self.broken(
                c.seq,
                format!(
                    "the signed head counts {} checkpoints, the export holds {} (a checkpoint was removed or added)",
                    c.checkpoints.map_or("no".into(), |n| n.to_string()),
                    self.checkpoints
                ),
            ));
        }
        self.signed_through = c.seq;
        match kind {
            Kind::Checkpoint => self.checkpoints += 1,
            Kind::Head => self.head_seen = true,
        }
        Ok(())
    }

    /// One export line, parsed here (the serial path; [`verify_reader`] parses in parallel).
    pub fn line(&mut self, text: &str) -> Result<(), Broken> {
        self.parsed(parse(text.trim_end_matches(['\n', '\r'])))
    }

    fn parsed(&mut self, p: Parsed) -> Result<(), Broken> {
        self.line += 1;
        match p {
            Parsed::Event(r, computed) => self.event(&r, computed),
            Parsed::Checkpoint(c) => self.signed(&c, Kind::Checkpoint),
            Parsed::Head(c) => self.signed(&c, Kind::Head),
            Parsed::Bad(why) => Err(self.broken(self.next_seq - 1, why)),
        }
    }

    pub fn finish(self) -> Result<Summary, Broken> {
        let head = self.next_seq - 1;
        if let Some(p) = self.pins.range(head + 1..).next().map(|(_, p)| p) {
            return Err(Broken {
                seq: p.seq,
                line: self.line,
                what: format!(
                    "{} is at seq {} but the log ends at seq {head}: events {}..={} were removed",
                    p.what,
                    p.seq,
                    head + 1,
                    p.seq
                ),
            });
        }
        if self.require_head && !self.head_seen {
            return Err(Broken {
                seq: self.next_seq - 1,
                line: self.line,
                what: "the export does not end with its signed head: it was cut short (truncated)"
                    .into(),
            });
        }
        Ok(Summary {
            tenant_id: self.tenant_id,
            events: self.events,
            checkpoints: self.checkpoints,
            head_seq: self.next_seq - 1,
            head_hash: self.prev_hash,
            signed_through: self.signed_through,
        })
    }
}

/// Lines per parallel batch.
const BATCH: usize = 8192;

/// Verifies an export read from `reader`; `Err(io)` only for read failures.
pub fn verify_reader(
    reader: impl BufRead,
    trusted: Vec<PublicKey>,
) -> std::io::Result<Result<Summary, Broken>> {
    verify_reader_pinned(reader, trusted, Vec::new())
}

/// [`verify_reader`], and the chain must pass through every pin.
pub fn verify_reader_pinned(
    reader: impl BufRead,
    trusted: Vec<PublicKey>,
    pins: Vec<Pin>,
) -> std::io::Result<Result<Summary, Broken>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    verify_lines(reader, Verifier::new(trusted, true).pin(pins), threads)
}

/// [`verify_reader`] on a given number of threads (the benchmark compares them).
pub fn verify_reader_threads(
    reader: impl BufRead,
    trusted: Vec<PublicKey>,
    threads: usize,
) -> std::io::Result<Result<Summary, Broken>> {
    verify_lines(reader, Verifier::new(trusted, true), threads)
}

fn verify_lines(
    mut reader: impl BufRead,
    mut v: Verifier,
    threads: usize,
) -> std::io::Result<Result<Summary, Broken>> {
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        let mut eof = false;
        while batch.len() < BATCH {
            let mut s = String::new();
            if reader.read_line(&mut s)? == 0 {
                eof = true;
                break;
            }
            if !s.ends_with('\n') {
                // A last line without its newline: the file was cut inside a line.
                s.push('\u{0}');
            }
            let trimmed = s.trim_end_matches(['\n', '\r']).len();
            s.truncate(trimmed);
            batch.push(s);
        }
        let parsed = parse_parallel(&batch, threads);
        for p in parsed {
            if let Err(b) = v.parsed(p) {
                return Ok(Err(b));
            }
        }
        if eof {
            return Ok(v.finish());
        }
    }
}

fn parse_parallel(lines: &[String], threads: usize) -> Vec<Parsed> {
    if threads <= 1 || lines.len() < 256 {
        return lines.iter().map(|l| parse(l)).collect();
    }
    let chunk = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|l| parse(l)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(lines.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A parser thread cannot panic on input (serde returns errors); if it ever
                // did, the lines count as unreadable rather than silently verified.
                Err(_) => out.push(Parsed::Bad("internal error while parsing".into())),
            }
        }
        out
    })
}

/// Each record's hash over its canonical form, on all cores.
fn hash_parallel(records: &[Record]) -> Vec<Option<[u8; 32]>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16);
    let one = |r: &Record| r.compute_hash().ok();
    if threads <= 1 || records.len() < 256 {
        return records.iter().map(one).collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    s.spawn(move || part.iter().map(one).collect::<Vec<_>>()),
                )
            })
            .collect();
        let mut out = Vec::with_capacity(records.len());
        for (len, h) in handles {
            // `None` makes the verifier hash the event itself, so a lost thread costs time only.
            out.extend(h.join().unwrap_or_else(|_| vec![None; len]));
        }
        out
    })
}

/// Checks events that continue a chain after (`from_seq`, `from_hash`) — what the checkpointer
/// checks before it signs.
pub fn verify_segment(from_seq: i64, from_hash: &[u8], records: &[Record]) -> Result<(), Broken> {
    let mut v = Verifier::new(Vec::new(), false);
    v.next_seq = from_seq + 1;
    v.prev_hash = from_hash.to_vec();
    for r in records {
        v.event(r, None)?;
    }
    Ok(())
}

/// Verifies the live chain of a tenant in the store: the same checks as for an export, minus the
/// signed head (the store has none; events after the latest checkpoint are reported as
/// `head_seq - signed_through`). A stored checkpoint beyond the head (events removed behind it)
/// is a break too. Checkpoints are checked against `pinned` keys when given — someone who can
/// write the database could also swap the public key stored beside the log — else against the
/// tenant's stored audit keys.
pub async fn verify_store(
    store: &crate::store::Store,
    tenant_id: Uuid,
    pinned: Option<Vec<PublicKey>>,
) -> crate::error::AppResult<Result<Summary, Broken>> {
    verify_store_pinned(store, tenant_id, pinned, Vec::new()).await
}

/// [`verify_store`], and the chain must pass through every pin (published checkpoints, this
/// replica's anchor).
pub async fn verify_store_pinned(
    store: &crate::store::Store,
    tenant_id: Uuid,
    pinned: Option<Vec<PublicKey>>,
    pins: Vec<Pin>,
) -> crate::error::AppResult<Result<Summary, Broken>> {
    Ok(verify_store_from(store, tenant_id, pinned, pins, None)
        .await?
        .0)
}

/// How far a verification of the live store got: what the next one can go on from instead of
/// hashing the whole log again (the `/audit` page, issue 16).
#[derive(Debug, Clone)]
pub struct Progress {
    verifier: Verifier,
    /// The keys checkpoints were checked against: another set means starting over.
    keys: Vec<String>,
}

impl Progress {
    /// The last event verified.
    pub fn seq(&self) -> i64 {
        self.verifier.next_seq - 1
    }
}

/// [`verify_store_pinned`], going on from `from` (a [`Progress`] an earlier call returned)
/// when the log still holds, at the seq it reached, the hash it verified there, and at every
/// pin at or below it the pinned hash. Otherwise (keys changed, events rewritten or removed
/// behind it) it starts over from the first event, so a break is reported as a full
/// verification would. Returns the progress to go on from next time, when the chain verified.
///
/// Events at or below the resumed point are not hashed again: an edit there that keeps the
/// stored hash is found by the next full verification (callers run one now and then).
pub async fn verify_store_from(
    store: &crate::store::Store,
    tenant_id: Uuid,
    pinned: Option<Vec<PublicKey>>,
    pins: Vec<Pin>,
    from: Option<Progress>,
) -> crate::error::AppResult<(Result<Summary, Broken>, Option<Progress>)> {
    let mut tx = store.read(tenant_id).await?;
    let keys = crate::signing_keys::audit_public_keys(&mut tx).await?;
    let head = tx.audit_head().await?.map_or(0, |h| h.0);
    let key_texts: Vec<String> = match &pinned {
        Some(p) => p.iter().filter_map(|k| k.to_openssh().ok()).collect(),
        None => keys.iter().map(|(_, k)| k.clone()).collect(),
    };
    let mut resumed = None;
    if let Some(from) = from.filter(|f| f.keys == key_texts) {
        let at = from.verifier.next_seq - 1;
        let mut holds =
            at <= head && tx.audit_hash_at(at).await? == Some(from.verifier.prev_hash.clone());
        for p in pins.iter().filter(|p| p.seq <= at) {
            holds &= tx.audit_hash_at(p.seq).await? == Some(p.hash.clone());
        }
        if holds {
            resumed = Some(from.verifier);
        }
    }
    tx.commit().await?;
    let trusted = pinned.unwrap_or_else(|| {
        keys.iter()
            .filter_map(|(_, k)| PublicKey::from_openssh(k).ok())
            .collect()
    });
    let mut v = match resumed {
        Some(v) => {
            let at = v.next_seq - 1;
            v.pin(pins.into_iter().filter(|p| p.seq > at))
        }
        None => Verifier::new(trusted, false).pin(pins),
    };
    let result = verify_store_rest(store, tenant_id, &mut v, head).await?;
    if let Err(b) = result {
        return Ok((Err(b), None));
    }
    let mut progress = v.clone();
    progress.pins.clear();
    Ok((
        v.finish(),
        Some(Progress {
            verifier: progress,
            keys: key_texts,
        }),
    ))
}

/// The events after those `v` has seen, up to `head`, and the checkpoints stored beyond the
/// head.
async fn verify_store_rest(
    store: &crate::store::Store,
    tenant_id: Uuid,
    v: &mut Verifier,
    head: i64,
) -> crate::error::AppResult<Result<(), Broken>> {
    let mut after = v.next_seq - 1;
    while after < head {
        let mut tx = store.read(tenant_id).await?;
        let events = tx.audit_events(after, 5000).await?;
        let upto = events.last().map_or(head, |e| e.seq).min(head);
        let checkpoints = tx.checkpoints_between(after, upto).await?;
        tx.commit().await?;
        if events.is_empty() {
            break;
        }
        // Hashing is the costly part and independent per event: all cores, off the runtime.
        let (events, hashes) = tokio::task::spawn_blocking(move || {
            let hashes = hash_parallel(&events);
            (events, hashes)
        })
        .await
        .map_err(crate::error::AppError::internal)?;
        let mut cps = checkpoints.iter().peekable();
        for (e, h) in events.iter().zip(hashes).filter(|(e, _)| e.seq <= upto) {
            if let Err(b) = v.event(e, h) {
                return Ok(Err(b));
            }
            while let Some(c) = cps.next_if(|c| c.seq <= e.seq) {
                if let Err(b) = v.signed(c, Kind::Checkpoint) {
                    return Ok(Err(b));
                }
            }
        }
        if let Some(c) = cps.next() {
            return Ok(Err(Broken {
                seq: c.seq,
                line: 0,
                what: "a checkpoint for an event that is missing".into(),
            }));
        }
        after = upto;
    }
    // Checkpoints signed beyond the head: read them before the current head, so one signed for
    // an event appended meanwhile is never mistaken for a cut.
    let mut tx = store.read(tenant_id).await?;
    let beyond = tx.checkpoints_between(head, i64::MAX).await?;
    let now_head = tx.audit_head().await?.map_or(0, |h| h.0);
    tx.commit().await?;
    if let Some(c) = beyond.iter().find(|c| c.seq > now_head) {
        return Ok(Err(Broken {
            seq: c.seq,
            line: 0,
            what: format!(
                "a stored checkpoint is at seq {} but the log ends at seq {now_head}: events {}..={} were removed",
                c.seq,
                now_head + 1,
                c.seq
            ),
        }));
    }
    Ok(Ok(()))
}

/// Serialises a line exactly as exports carry it (no trailing newline).
pub fn to_line(line: LineRef<'_>) -> Result<String, serde_json::Error> {
    serde_json::to_string(&line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::Checkpoint;
    use ssh_key::rand_core::OsRng;

    fn export(n: i64, every: i64) -> (String, PublicKey) {
        let key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
        let kid = Uuid::new_v4();
        let tenant_id = Uuid::new_v4();
        let at = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let mut prev = GENESIS_HASH.to_vec();
        let mut out = String::new();
        for seq in 1..=n {
            let mut r = Record {
                tenant_id,
                seq,
                at,
                actor: "system".into(),
                action: "test.event".into(),
                subject: format!("s{seq}"),
                request_id: None,
                ip: None,
                user_agent: None,
                details: sqlx::types::Json(serde_json::json!({"n": seq})),
                prev_hash: prev.clone(),
                hash: vec![],
            };
            r.hash = r.compute_hash().unwrap().to_vec();
            prev = r.hash.clone();
            out += &to_line(LineRef::Event(&r)).unwrap();
            out.push('\n');
            if seq % every == 0 {
                let c = Checkpoint::unsigned(tenant_id, seq, &r.hash, at, kid)
                    .sign(Kind::Checkpoint, &key)
                    .unwrap();
                out += &to_line(LineRef::Checkpoint(&c)).unwrap();
                out.push('\n');
            }
        }
        let mut h = Checkpoint::unsigned(tenant_id, n, &prev, at, kid);
        h.checkpoints = Some((n / every) as u64);
        let h = h.sign(Kind::Head, &key).unwrap();
        out += &to_line(LineRef::Head(&h)).unwrap();
        out.push('\n');
        (out, key.public_key().clone())
    }

    fn check(text: &str, key: &PublicKey) -> Result<Summary, Broken> {
        verify_reader(text.as_bytes(), vec![key.clone()]).unwrap()
    }

    #[test]
    fn a_clean_export_verifies_with_a_summary() {
        let (text, key) = export(1000, 100);
        let s = check(&text, &key).unwrap();
        assert_eq!((s.events, s.checkpoints, s.head_seq), (1000, 10, 1000));
        assert!(s.to_string().starts_with("ok: 1000 events, 10 checkpoints"));
    }

    #[test]
    fn every_single_byte_edit_is_found() {
        let (text, key) = export(3, 2);
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            let mut edited = bytes.to_vec();
            edited[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let edited = String::from_utf8_lossy(&edited).into_owned();
            assert!(check(&edited, &key).is_err(), "byte {i} edit not found");
        }
    }

    #[test]
    fn pins_beyond_the_head_or_off_the_chain_are_named() {
        let (text, key) = export(10, 5);
        let Ok(Line::Event(e7)) = serde_json::from_str::<Line>(text.lines().nth(7).unwrap()) else {
            panic!("line 8 is event 7")
        };
        assert_eq!(e7.seq, 7);
        let pin = |seq, hash: &[u8]| Pin {
            seq,
            hash: hash.to_vec(),
            what: "the published checkpoint".into(),
        };
        let run = |pins| verify_reader_pinned(text.as_bytes(), vec![key.clone()], pins).unwrap();
        run(vec![pin(7, &e7.hash)]).unwrap();
        let e = run(vec![pin(7, &[1; 32])]).unwrap_err();
        assert_eq!(e.seq, 7, "{e}");
        assert!(e.what.contains("disagrees with the chain"), "{e}");
        let e = run(vec![pin(7, &e7.hash), pin(12, &[1; 32])]).unwrap_err();
        assert_eq!(e.seq, 12, "{e}");
        assert!(e.what.contains("events 11..=12 were removed"), "{e}");
    }

    #[test]
    fn truncation_and_a_missing_event_are_named() {
        let (text, key) = export(10, 5);
        let lines: Vec<&str> = text.lines().collect();
        let cut = lines[..lines.len() - 1].join("\n") + "\n";
        let e = check(&cut, &key).unwrap_err();
        assert!(e.what.contains("truncated"), "{e}");
        let mut missing = lines.clone();
        missing.remove(3);
        let e = check(&(missing.join("\n") + "\n"), &key).unwrap_err();
        assert_eq!(e.seq, 5);
        assert!(e.what.contains("expected event 4"), "{e}");
    }
}
