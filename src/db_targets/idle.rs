//! Idle admin connections to database targets, kept for the next login (issue 16): a fresh
//! connection per login cost a TCP and TLS handshake and authentication, four times the work of
//! the `CREATE ROLE` itself. A connection goes back only after its operation succeeded and its
//! role lock was released; after any error it is closed (closing releases whatever it held). It
//! is kept under the target's full identity (tenant, name, URL, password), so an edited target
//! never gets an old connection, and for at most [`IDLE_FOR`].

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{AdminConn, TargetResult, TargetSpec};

/// Idle connections kept per target.
const MAX_IDLE: usize = 4;
/// How long an idle connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(60);

type Key = (Uuid, String, String, [u8; 32]);
/// Idle connections of each target, with when each was checked in.
type Kept = HashMap<Key, Vec<(AdminConn, Instant)>>;

static IDLE: LazyLock<Mutex<Kept>> = LazyLock::new(Default::default);

impl TargetSpec {
    fn idle_key(&self, tenant: Uuid) -> Key {
        let digest: [u8; 32] = Sha256::digest(self.password().as_bytes()).into();
        (tenant, self.name.clone(), self.url.to_string(), digest)
    }

    /// An idle admin connection of tenant `tenant` to this target if one is kept (true), else
    /// a new one (false).
    async fn checkout(&self, tenant: Uuid) -> TargetResult<(AdminConn, bool)> {
        let key = self.idle_key(tenant);
        let kept = IDLE.lock().ok().and_then(|mut idle| {
            let conns = idle.get_mut(&key)?;
            conns.retain(|(_, at)| at.elapsed() < IDLE_FOR);
            conns.pop().map(|(c, _)| c)
        });
        match kept {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.connect().await?, false)),
        }
    }

    /// An admin connection of tenant `tenant` holding the target's lock for `role`: a kept one
    /// if it still answers, else a new one. A kept connection that fails its first statement
    /// died idle (the target restarted or timed it out), and so did the others kept beside it:
    /// they are all closed before a new one is made.
    pub async fn locked_for(&self, tenant: Uuid, role: &str) -> TargetResult<AdminConn> {
        let (mut conn, reused) = self.checkout(tenant).await?;
        match conn.lock(role).await {
            Ok(()) => return Ok(conn),
            Err(e) if !reused => {
                conn.close().await;
                return Err(e);
            }
            Err(_) => conn.close().await,
        }
        let dead = IDLE
            .lock()
            .ok()
            .and_then(|mut idle| idle.remove(&self.idle_key(tenant)))
            .unwrap_or_default();
        for (conn, _) in dead {
            conn.close().await;
        }
        let mut conn = self.connect().await?;
        if let Err(e) = conn.lock(role).await {
            conn.close().await;
            return Err(e);
        }
        Ok(conn)
    }

    /// Ends the use of `conn` for `role`: after an operation that `succeeded`, its role lock is
    /// released and it is kept for the next login; otherwise (or if the release fails) it is
    /// closed, which releases whatever it held.
    pub async fn give_back(&self, tenant: Uuid, mut conn: AdminConn, role: &str, succeeded: bool) {
        if succeeded && conn.release(role).await.is_ok() {
            self.check_in(tenant, conn).await;
        } else {
            conn.close().await;
        }
    }

    /// Keeps `conn` for the next [`Self::checkout`]: only a connection whose operation
    /// succeeded and that holds no lock.
    async fn check_in(&self, tenant: Uuid, conn: AdminConn) {
        let key = self.idle_key(tenant);
        let surplus = match IDLE.lock() {
            Ok(mut idle) => {
                let conns = idle.entry(key).or_default();
                conns.retain(|(_, at)| at.elapsed() < IDLE_FOR);
                if conns.len() < MAX_IDLE {
                    conns.push((conn, Instant::now()));
                    None
                } else {
                    Some(conn)
                }
            }
            Err(_) => Some(conn),
        };
        if let Some(conn) = surplus {
            conn.close().await;
        }
    }
}
