//! When the proxy's port is taken: which port to offer instead.

use std::net::{Ipv4Addr, TcpListener};

/// How far above the taken port to look for a free one (a nearby port is easy to remember).
const NEARBY: u16 = 100;

/// A free port near `taken`, skipping `avoid` (the headless server's dashboard port, 3001,
/// by convention); any free port when none nearby is.
pub fn suggest(taken: u16, avoid: &[u16], is_free: impl Fn(u16) -> bool) -> Option<u16> {
    (taken.saturating_add(1)..=taken.saturating_add(NEARBY))
        .filter(|port| !avoid.contains(port))
        .find(|port| is_free(*port))
        .or_else(|| is_free(0).then(any_free).flatten())
}

/// Whether `port` can be bound on 127.0.0.1 now (0: whether any can).
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn any_free() -> Option<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    Some(listener.local_addr().ok()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_the_next_free_port_above_the_taken_one_skipping_the_dashboards() {
        let taken = [3000, 3002];
        let free = |p: u16| !taken.contains(&p);
        assert_eq!(suggest(3000, &[3001], free), Some(3003));
        assert_eq!(suggest(3000, &[], free), Some(3001));
    }

    #[test]
    fn falls_back_to_any_free_port_and_sees_a_real_taken_one() {
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        assert!(!is_free(port));
        let offered = suggest(port, &[], |p| p == 0).unwrap();
        assert_ne!(offered, port);
        assert_eq!(suggest(u16::MAX, &[], |_| false), None);
    }
}
