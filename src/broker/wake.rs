//! When a person's transition wakes the reaper: the broker decides, since it knows what the
//! transition did; the reaper only sleeps until woken or until its next deadline.

use std::time::Duration;

use time::OffsetDateTime;

/// The longest sleep between two passes of the server's reaper.
pub const EVERY: Duration = Duration::from_secs(5);

/// Whether a person's transition of `r` needs a reaper pass at once rather than at the next one
/// (at most [`EVERY`] away): it ended the request (its database logins are due for cleanup, its
/// sessions end), or its next deadline comes before that pass. An approval of a grant that
/// lasts an hour needs neither: only its notifications go out at once (the postman is woken).
pub fn reaper_wanted_after(r: &crate::workflow::Request, now: OffsetDateTime) -> bool {
    use crate::workflow::State;
    let soon = |t: OffsetDateTime| t - now < EVERY;
    match r.state {
        State::Pending => soon(r.pending_until),
        State::Scheduled => r.starts_at.is_none_or(soon),
        State::Active => r.grant.as_ref().is_none_or(|g| soon(g.not_after)),
        State::Denied | State::Cancelled | State::Lapsed | State::Expired | State::Revoked => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transition_wakes_the_reaper_only_when_it_cannot_wait_for_the_next_pass() {
        use crate::workflow::{Grant, Request, State};
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let request = |state: State, ends_in: time::Duration| Request {
            id: uuid::Uuid::nil(),
            requester: uuid::Uuid::nil(),
            profile: "prod-shell".into(),
            duration: ends_in,
            justification: String::new(),
            ticket: None,
            starts_at: (state == State::Scheduled).then_some(now + ends_in),
            state,
            created_at: now,
            pending_until: now + ends_in,
            shortcut: None,
            approvals: vec![],
            extension: None,
            grant: (state == State::Active).then_some(Grant {
                activated_at: now,
                not_after: now + ends_in,
            }),
            reviewed_by: None,
        };
        let hour = time::Duration::hours(1);
        let two_s = time::Duration::seconds(2);
        // An hour's grant or wait: the next pass comes first.
        for state in [State::Active, State::Pending, State::Scheduled] {
            assert!(
                !reaper_wanted_after(&request(state, hour), now),
                "{state:?} for an hour"
            );
            assert!(
                reaper_wanted_after(&request(state, two_s), now),
                "{state:?} for 2 s"
            );
        }
        // An ended request's credentials end now.
        for state in [
            State::Revoked,
            State::Denied,
            State::Cancelled,
            State::Expired,
        ] {
            assert!(reaper_wanted_after(&request(state, hour), now), "{state:?}");
        }
    }
}
