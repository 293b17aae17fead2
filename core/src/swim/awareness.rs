//! Lifeguard's local health score: how much this node distrusts its own view. Failed probes
//! and refutations raise it, successful probes lower it; the probe interval is multiplied by
//! score + 1, so a struggling node probes (and accuses) less often.

use crate::config::Config;

/// The score, 0 ..= `awareness_max_multiplier` − 1.
#[derive(Debug, Default)]
pub(super) struct Awareness(u32);

impl Awareness {
    pub(super) fn score(&self) -> u32 {
        self.0
    }

    /// Move the score by `delta`, within its bounds.
    pub(super) fn adjust(&mut self, delta: i64, cfg: &Config) {
        let max = cfg.awareness_max_multiplier as i64 - 1;
        self.0 = (self.0 as i64 + delta).clamp(0, max) as u32;
    }

    /// The probe interval scaled by the score.
    pub(super) fn probe_interval(&self, cfg: &Config) -> std::time::Duration {
        cfg.probe_interval * (self.0 + 1)
    }

    #[cfg(test)]
    pub(super) fn set(&mut self, score: u32) {
        self.0 = score;
    }
}
