//! Exponential back-off of failed logins per user and source address: the
//! n-th failure in a row makes the next attempt of that pair wait
//! `BASE * 2^(n-1)`, at most `MAX`. A success forgets the pair; pairs idle
//! for `FORGET` are dropped. Other users and addresses are not slowed, so an
//! attacker cannot lock a victim out from elsewhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BASE: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(10);
const FORGET: Duration = Duration::from_secs(15 * 60);
/// Entries kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

type Key = (String, Option<IpAddr>);

#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, (u32, Instant)>>,
}

impl Throttle {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How much longer the pair must wait before its next attempt.
    pub fn delay(&self, user: &str, peer: Option<IpAddr>) -> Duration {
        match self.map().get(&(user.to_owned(), peer)) {
            Some(&(n, last)) if n > 0 && last.elapsed() < FORGET => BASE
                .saturating_mul(1u32 << (n - 1).min(16))
                .min(MAX)
                .saturating_sub(last.elapsed()),
            _ => Duration::ZERO,
        }
    }

    /// Counts a failure; returns the failures in a row.
    pub fn failed(&self, user: &str, peer: Option<IpAddr>) -> u32 {
        let mut map = self.map();
        if map.len() >= SWEEP_AT {
            map.retain(|_, (_, last)| last.elapsed() < FORGET);
        }
        let entry = map.entry((user.to_owned(), peer)).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FORGET {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        entry.0
    }

    pub fn succeeded(&self, user: &str, peer: Option<IpAddr>) {
        self.map().remove(&(user.to_owned(), peer));
    }
}
