//! Client-side aggregation (off by default): within one flush window, counters are
//! summed (each scaled by its sample rate), gauges keep their last value (deltas applied
//! to it, or summed when no value was set), and set members are de-duplicated. A key is
//! the whole line but its value (name, type, tags), so differently tagged series stay
//! apart. Timers, histograms, distributions, timestamped lines, events and service
//! checks pass through untouched: their every sample matters to the daemon.
//!
//! It runs on the background thread and works on the formatted lines, so the caller's
//! hot path is the same with and without it.

use std::collections::{HashMap, HashSet};

use super::format::put_f64;
use super::parse::{parse_line, Line, MetricLine};
use super::Flavour;

#[derive(Debug)]
enum Entry {
    Counter(f64),
    Gauge { absolute: Option<f64>, delta: f64 },
    Set(Vec<Vec<u8>>, HashSet<Vec<u8>>),
}

#[derive(Debug)]
struct Series {
    /// The line without its value: `name` then `|type...`.
    key: Vec<u8>,
    /// Where the value goes in `key`.
    split: usize,
    entry: Entry,
}

/// One flush window's aggregates, in first-seen order.
#[derive(Debug)]
pub(crate) struct Aggregator {
    flavour: Flavour,
    index: HashMap<Vec<u8>, usize>,
    series: Vec<Series>,
    key: Vec<u8>,
    scratch: Vec<u8>,
}

fn aggregatable(line: &[u8]) -> Option<MetricLine<'_>> {
    match parse_line(line) {
        Ok(Line::Metric(m)) if !m.timestamped && matches!(m.kind, b"c" | b"g" | b"s") => Some(m),
        _ => None,
    }
}

fn number(s: &[u8]) -> f64 {
    // The line came from our own encoder and parsed: the value is a finite number.
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

impl Aggregator {
    pub(crate) fn new(flavour: Flavour) -> Aggregator {
        Aggregator {
            flavour,
            index: HashMap::new(),
            series: Vec::new(),
            key: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Takes in a unit if every line of it can be aggregated; returns how many lines it
    /// absorbed, or `None` when the unit must be sent as it is.
    pub(crate) fn add(&mut self, unit: &[u8]) -> Option<u64> {
        if !unit
            .split(|&b| b == b'\n')
            .all(|l| aggregatable(l).is_some())
        {
            return None;
        }
        let mut lines = 0;
        for line in unit.split(|&b| b == b'\n') {
            if let Some(m) = aggregatable(line) {
                self.add_metric(&m);
                lines += 1;
            }
        }
        Some(lines)
    }

    fn add_metric(&mut self, m: &MetricLine<'_>) {
        self.key.clear();
        self.key.extend_from_slice(m.name);
        self.key.push(b'|');
        self.key.extend_from_slice(m.kind);
        self.key.extend_from_slice(m.rest);
        let i = match self.index.get(&self.key) {
            Some(&i) => i,
            None => {
                let entry = match m.kind {
                    b"c" => Entry::Counter(0.0),
                    b"g" => Entry::Gauge {
                        absolute: None,
                        delta: 0.0,
                    },
                    _ => Entry::Set(Vec::new(), HashSet::new()),
                };
                self.series.push(Series {
                    key: self.key.clone(),
                    split: m.name.len(),
                    entry,
                });
                self.index.insert(self.key.clone(), self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let has_deltas = self.flavour != Flavour::DogStatsd;
        match &mut self.series[i].entry {
            Entry::Counter(sum) => *sum += number(m.value) / m.sample_rate,
            Entry::Gauge { absolute, delta } => {
                let v = number(m.value);
                let is_delta = has_deltas && matches!(m.value.first(), Some(b'+' | b'-'));
                match (is_delta, absolute.as_mut()) {
                    (false, _) => {
                        *absolute = Some(v);
                        *delta = 0.0;
                    }
                    (true, Some(a)) => *a += v,
                    (true, None) => *delta += v,
                }
            }
            Entry::Set(members, seen) => {
                if !seen.contains(m.value) {
                    seen.insert(m.value.to_vec());
                    members.push(m.value.to_vec());
                }
            }
        }
    }

    /// Hands every aggregate of the window to `out` as a unit, then starts a new window.
    /// Returns the number of lines emitted.
    pub(crate) fn drain(&mut self, out: &mut impl FnMut(&[u8])) -> u64 {
        let mut lines = 0;
        let negative_needs_zero = self.flavour != Flavour::DogStatsd;
        for s in self.series.drain(..) {
            let (name, tail) = s.key.split_at(s.split);
            let line = |scratch: &mut Vec<u8>, value: &dyn Fn(&mut Vec<u8>)| {
                scratch.extend_from_slice(name);
                scratch.push(b':');
                value(scratch);
                scratch.extend_from_slice(tail);
            };
            let sc = &mut self.scratch;
            // A sum past f64's range has no honest line: it is dropped, not clamped.
            let finite = match &s.entry {
                Entry::Counter(v) => v.is_finite(),
                Entry::Gauge { absolute, delta } => absolute.unwrap_or(*delta).is_finite(),
                Entry::Set(..) => true,
            };
            if !finite {
                continue;
            }
            match s.entry {
                Entry::Counter(sum) => {
                    sc.clear();
                    line(sc, &|o| put_f64(o, sum));
                    out(sc);
                    lines += 1;
                }
                Entry::Gauge { absolute, delta } => {
                    sc.clear();
                    match absolute {
                        Some(v) if v < 0.0 && negative_needs_zero => {
                            line(sc, &|o| o.push(b'0'));
                            sc.push(b'\n');
                            line(sc, &|o| put_f64(o, v));
                            lines += 2;
                        }
                        Some(v) => {
                            line(sc, &|o| put_f64(o, v));
                            lines += 1;
                        }
                        None => {
                            line(sc, &|o| {
                                o.push(if delta < 0.0 { b'-' } else { b'+' });
                                put_f64(o, delta.abs());
                            });
                            lines += 1;
                        }
                    }
                    out(sc);
                }
                Entry::Set(members, _) => {
                    for member in members {
                        sc.clear();
                        line(sc, &|o| o.extend_from_slice(&member));
                        out(sc);
                        lines += 1;
                    }
                }
            }
        }
        self.index.clear();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(flavour: Flavour, units: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut a = Aggregator::new(flavour);
        let mut passed = Vec::new();
        for u in units {
            if a.add(u.as_bytes()).is_none() {
                passed.push(u.to_string());
            }
        }
        let mut out = Vec::new();
        a.drain(&mut |u: &[u8]| out.push(String::from_utf8(u.to_vec()).unwrap()));
        assert!(a.is_empty());
        (out, passed)
    }

    #[test]
    fn sums_counters_per_series_scaling_sampled_ones() {
        let (out, passed) = run(
            Flavour::Etsy,
            &[
                "a:1|c",
                "a:2|c",
                "a:1|c|@0.5",
                "a:1|c|#k:v",
                "b:1.5|c",
                "b:1|c",
            ],
        );
        assert_eq!(out, ["a:5|c", "a:1|c|#k:v", "b:2.5|c"]);
        assert!(passed.is_empty());
    }

    #[test]
    fn gauges_keep_the_last_value_and_apply_deltas() {
        let (out, _) = run(
            Flavour::Etsy,
            &[
                "g:5|g",
                "g:+2|g",
                "d:+1|g",
                "d:-4|g",
                "n:3|g",
                "n:0|g\nn:-7|g",
                "z:1|g",
                "z:-1|g",
            ],
        );
        assert_eq!(out, ["g:7|g", "d:-3|g", "n:0|g\nn:-7|g", "z:0|g"]);
        // DogStatsD has no deltas: a negative value is a set.
        let (out, _) = run(Flavour::DogStatsd, &["g:5|g", "g:-2|g"]);
        assert_eq!(out, ["g:-2|g"]);
    }

    #[test]
    fn sets_are_deduplicated_in_first_seen_order() {
        let (out, _) = run(Flavour::Etsy, &["u:bob|s", "u:al|s", "u:bob|s"]);
        assert_eq!(out, ["u:bob|s", "u:al|s"]);
    }

    #[test]
    fn timers_and_timestamped_lines_pass_through() {
        let (out, passed) = run(
            Flavour::DogStatsd,
            &["t:1|ms", "h:1|h", "c:1|c|T5", "_e{1,1}:a|b", "c:1|c"],
        );
        assert_eq!(out, ["c:1|c"]);
        assert_eq!(passed, ["t:1|ms", "h:1|h", "c:1|c|T5", "_e{1,1}:a|b"]);
    }
}
