//! Brute-force protection on the proxy port: an address that presents more than
//! [`LockoutConfig::max_keys`] distinct wrong client keys within [`LockoutConfig::window`]
//! gets 429 for every request, valid keys included, until [`LockoutConfig::duration`] has
//! passed. Each attempt is still recorded (the handler records every refusal). Distinct keys
//! are counted, not attempts: a tool that keeps retrying one revoked key after a rotation
//! never locks its user out. In memory only: a restart lifts every lockout.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LockoutConfig;
use crate::keys::KeyHash;

/// Addresses tracked at most; past it, addresses with nothing recent are forgotten first.
const MAX_ADDRESSES: usize = 4096;

#[derive(Debug)]
pub struct Lockout {
    config: LockoutConfig,
    by_address: Mutex<HashMap<IpAddr, Strikes>>,
}

#[derive(Debug, Default)]
struct Strikes {
    /// Distinct wrong keys seen within the window, oldest first.
    wrong: VecDeque<(Instant, KeyHash)>,
    until: Option<Instant>,
}

impl Strikes {
    fn forget_before(&mut self, since: Instant) {
        while self.wrong.front().is_some_and(|(at, _)| *at < since) {
            self.wrong.pop_front();
        }
    }
}

impl Lockout {
    pub fn new(config: LockoutConfig) -> Lockout {
        Lockout {
            config,
            by_address: Mutex::default(),
        }
    }

    fn enabled(&self) -> bool {
        self.config.max_keys > 0
    }

    /// How long `address` stays locked out, if it is.
    pub fn locked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        if !self.enabled() {
            return None;
        }
        let by_address = self.by_address.lock().expect("lockout lock");
        let until = by_address.get(&address)?.until?;
        (until > now).then(|| until - now)
    }

    /// The rule in force (what the Security page shows).
    pub fn config(&self) -> LockoutConfig {
        self.config
    }

    /// Every address locked out at `now`, with how long it stays so, longest first.
    pub fn locked_out(&self, now: Instant) -> Vec<(IpAddr, Duration)> {
        let by_address = self.by_address.lock().expect("lockout lock");
        let mut locked: Vec<_> = by_address
            .iter()
            .filter_map(|(address, s)| Some((*address, s.until?.checked_duration_since(now)?)))
            .filter(|(_, left)| !left.is_zero())
            .collect();
        locked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        locked
    }

    /// Lifts `address`'s lockout and forgets its wrong keys; whether it was locked out.
    pub fn lift(&self, address: IpAddr, now: Instant) -> bool {
        let mut by_address = self.by_address.lock().expect("lockout lock");
        let was = by_address
            .remove(&address)
            .and_then(|s| s.until)
            .is_some_and(|until| until > now);
        if was {
            tracing::info!(%address, "lockout lifted");
        }
        was
    }

    /// Counts a wrong key presented by `address`; true when this one locked it out.
    pub fn wrong_key(&self, address: IpAddr, key: KeyHash, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let since = now.checked_sub(self.config.window).unwrap_or(now);
        let mut by_address = self.by_address.lock().expect("lockout lock");
        if by_address.len() >= MAX_ADDRESSES && !by_address.contains_key(&address) {
            by_address.retain(|_, s| {
                s.forget_before(since);
                !s.wrong.is_empty() || s.until.is_some_and(|u| u > now)
            });
            if by_address.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let strikes = by_address.entry(address).or_default();
        strikes.forget_before(since);
        if strikes.until.is_some_and(|u| u > now) {
            return false;
        }
        if !strikes.wrong.iter().any(|(_, k)| *k == key) {
            strikes.wrong.push_back((now, key));
        }
        if strikes.wrong.len() > self.config.max_keys {
            strikes.until = Some(now + self.config.duration);
            strikes.wrong.clear();
            tracing::warn!(
                %address,
                minutes = self.config.duration.as_secs() / 60,
                "more than {} distinct wrong client keys from one address within {} s: every request from it gets 429 for a while",
                self.config.max_keys,
                self.config.window.as_secs()
            );
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig {
            max_keys: 3,
            window: Duration::from_secs(300),
            duration: Duration::from_secs(900),
        })
    }

    fn key(n: u8) -> KeyHash {
        KeyHash::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
    }

    #[test]
    fn a_lockout_is_listed_until_lifted() {
        let l = lockout();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let now = Instant::now();
        for n in 0..=3 {
            l.wrong_key(ip, key(n), now);
        }
        assert_eq!(l.locked_out(now), [(ip, l.config.duration)]);
        assert!(l.lift(ip, now));
        assert!(l.locked(ip, now).is_none());
        assert!(l.locked_out(now).is_empty());
        assert!(!l.lift(ip, now));
    }

    #[test]
    fn distinct_wrong_keys_past_the_limit_lock_the_address_until_the_time_is_up() {
        let l = lockout();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for n in 0..3 {
            assert!(!l.wrong_key(ip, key(n), t0));
        }
        assert_eq!(l.locked(ip, t0), None);
        assert!(l.wrong_key(ip, key(3), t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.locked(ip, t1), Some(Duration::from_secs(900)));
        assert_eq!(l.locked(other, t1), None, "only that address");
        assert_eq!(
            l.locked(ip, t1 + Duration::from_secs(899)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(l.locked(ip, t1 + Duration::from_secs(900)), None);
        // Afterwards it starts from nothing.
        assert!(!l.wrong_key(ip, key(9), t1 + Duration::from_secs(901)));
    }

    #[test]
    fn one_key_retried_never_locks_and_old_strikes_expire() {
        let l = lockout();
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        for s in 0..1000 {
            assert!(!l.wrong_key(ip, key(7), t0 + Duration::from_millis(s)));
        }
        assert_eq!(l.locked(ip, t0 + Duration::from_secs(1)), None);
        // Three keys, then a fourth after the first has left the window.
        let other: IpAddr = "10.0.0.3".parse().unwrap();
        for n in 0..3 {
            l.wrong_key(other, key(n), t0 + Duration::from_secs(n.into()));
        }
        assert!(!l.wrong_key(other, key(3), t0 + Duration::from_secs(301)));
        assert_eq!(l.locked(other, t0 + Duration::from_secs(302)), None);
    }

    #[test]
    fn zero_turns_it_off() {
        let l = Lockout::new(LockoutConfig {
            max_keys: 0,
            ..LockoutConfig::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for n in 0..50 {
            assert!(!l.wrong_key(ip, key(n), t0));
        }
        assert_eq!(l.locked(ip, t0), None);
    }
}
