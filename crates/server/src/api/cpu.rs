//! CPU use as a percentage needs two readings of a cumulative counter: this keeps the last
//! reading of each sandbox, so that a metrics request reports the use since the previous one.
//! A reading goes when its sandbox leaves the registry (killed, expired or exited: see
//! `sandboxes::kill`, `sandboxes::metrics` and `AppState::watch_exit`).

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct CpuSamples {
    last: Mutex<HashMap<String, (DateTime<Utc>, u64)>>,
}

impl CpuSamples {
    /// Percent of `cpus` CPUs used between the previous reading (or `started_at`) and `now`,
    /// given the sandbox's total CPU time `cpu_ns` at `now`.
    pub fn percent(&self, id: &str, started_at: DateTime<Utc>, now: DateTime<Utc>, cpu_ns: u64, cpus: u32) -> f64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // A reading above the new one means a new process tree (a restart): count from zero.
        let (since, before) = match last.get(id) {
            Some(&(t, ns)) if ns <= cpu_ns && t < now => (t, ns),
            _ => (started_at, 0),
        };
        last.insert(id.to_string(), (now, cpu_ns));
        let wall_ns = (now - since).num_nanoseconds().unwrap_or(0).max(1) as f64;
        let pct = (cpu_ns - before) as f64 / (wall_ns * f64::from(cpus.max(1))) * 100.0;
        (pct.clamp(0.0, 100.0) * 100.0).round() / 100.0
    }

    pub fn forget(&self, id: &str) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// How many sandboxes have a reading kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_over_the_time_since_the_previous_reading() {
        let s = CpuSamples::default();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t1 = t0 + chrono::TimeDelta::seconds(10);
        let t2 = t1 + chrono::TimeDelta::seconds(10);
        // 5 s of CPU in 10 s on 2 CPUs: 25 %.
        assert_eq!(s.percent("a", t0, t1, 5_000_000_000, 2), 25.0);
        // Then 20 s of CPU in 10 s on 2 CPUs: all of it.
        assert_eq!(s.percent("a", t0, t2, 25_000_000_000, 2), 100.0);
        // A counter that went back (restarted on its files) counts from the start again.
        assert_eq!(s.percent("a", t0, t2 + chrono::TimeDelta::seconds(10), 3_000_000_000, 1), 10.0);
        s.forget("a");
        assert_eq!(s.percent("a", t0, t1, 0, 1), 0.0);
    }
}
