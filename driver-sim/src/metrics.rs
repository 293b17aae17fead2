//! Metrics a simulation records: named values, counters and time series, printed as JSON.

use std::collections::BTreeMap;

use rookery_core::Timestamp;
use serde_json::{json, Map, Value};

/// Named metrics, in name order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    values: BTreeMap<String, Value>,
    series: BTreeMap<String, Vec<(Timestamp, f64)>>,
}

impl Metrics {
    /// Set `name` to `value` (anything JSON can hold).
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.values.insert(name.to_string(), value.into());
    }

    /// Add `by` to the counter `name` (starting from 0).
    pub fn add(&mut self, name: &str, by: f64) {
        let v = self.values.entry(name.to_string()).or_insert(json!(0.0));
        *v = json!(v.as_f64().unwrap_or(0.0) + by);
    }

    /// Append `(t, value)` to the time series `name`.
    pub fn sample(&mut self, name: &str, t: Timestamp, value: f64) {
        self.series
            .entry(name.to_string())
            .or_default()
            .push((t, value));
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// The time series `name`.
    pub fn series(&self, name: &str) -> &[(Timestamp, f64)] {
        self.series.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every value, and every series as `[[seconds, value], ...]`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m: Map<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, s) in &self.series {
            let points: Vec<Value> = s
                .iter()
                .map(|(t, v)| json!([t.as_micros() as f64 / 1e6, v]))
                .collect();
            m.insert(k.clone(), Value::Array(points));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_counters_and_series() {
        let mut m = Metrics::default();
        m.set("nodes", 5);
        m.add("drops", 1.0);
        m.add("drops", 2.0);
        m.sample("alive", Timestamp::from_millis(1500), 4.0);
        let j = Value::Object(m.to_json());
        assert_eq!(j["nodes"], json!(5));
        assert_eq!(j["drops"], json!(3.0));
        assert_eq!(j["alive"], json!([[1.5, 4.0]]));
        assert_eq!(m.series("alive").len(), 1);
    }
}
