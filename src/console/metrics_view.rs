//! Process-local numbers for the console, read from this process's own Prometheus
//! exposition (the same text `/metrics` serves, so the console never counts differently
//! from the dashboards), and per-second rates over a short window of earlier readings.
//!
//! Invariant: everything here describes only the process serving the page; pages label
//! it with that process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One sample of the text exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

impl Sample {
    pub(crate) fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// The samples of one exposition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(pub(crate) Vec<Sample>);

impl Samples {
    /// Parses the Prometheus text format (as rendered by the `prometheus` crate: no
    /// timestamps, label values escaped with `\\`, `\"` and `\n`).
    pub(crate) fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some((s, v)) => (s, v),
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((n, rest)) => (
                    n.to_string(),
                    parse_labels(rest.strip_suffix('}').unwrap_or(rest)),
                ),
            };
            out.push(Sample {
                name,
                labels,
                value,
            });
        }
        Samples(out)
    }

    /// Samples of family `name`.
    pub(crate) fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    /// Sum of family `name` over the samples `keep` accepts.
    pub(crate) fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
        self.family(name).filter(|s| keep(s)).map(|s| s.value).sum()
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if name.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(name, value);
    }
    out
}

/// How far back rates look.
const WINDOW: Duration = Duration::from_secs(60);

/// Earlier readings of the counters, for per-second rates.
#[derive(Default)]
pub(crate) struct RateWindow {
    readings: Mutex<VecDeque<(Instant, Samples)>>,
}

/// Rates between the oldest kept reading and now.
pub(crate) struct Rates {
    before: Option<Samples>,
    pub(crate) seconds: f64,
}

impl Rates {
    /// Per-second increase of `name` over the samples `keep` accepts; `None` before a
    /// second reading exists.
    pub(crate) fn per_second(
        &self,
        now: &Samples,
        name: &str,
        keep: impl Fn(&Sample) -> bool + Copy,
    ) -> Option<f64> {
        let before = self.before.as_ref()?;
        let delta = now.sum(name, keep) - before.sum(name, keep);
        // A counter never falls; a fall means a restart, which the window cannot span.
        Some(delta.max(0.0) / self.seconds)
    }
}

impl RateWindow {
    /// Records `now` and returns the rates against the oldest reading within the window
    /// that is at least a second old.
    pub(crate) fn observe(&self, now: &Samples) -> Rates {
        let at = Instant::now();
        let mut r = self.readings.lock().unwrap_or_else(|p| p.into_inner());
        while r.front().is_some_and(|(t, _)| at - *t > WINDOW) {
            r.pop_front();
        }
        let rates = match r.front() {
            Some((t, s)) if at - *t >= Duration::from_secs(1) => Rates {
                before: Some(s.clone()),
                seconds: (at - *t).as_secs_f64(),
            },
            _ => Rates {
                before: None,
                seconds: 0.0,
            },
        };
        if r.back()
            .is_none_or(|(t, _)| at - *t >= Duration::from_secs(1))
        {
            r.push_back((at, now.clone()));
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_exposition() {
        let s = Samples::parse(
            "# HELP x y\n# TYPE x counter\nrelay_events_processed_total{outcome=\"synced\",route=\"guest_sync\"} 3\nrelay_listen_channels 2\nodd{a=\"q\\\"x\"} 1.5\n",
        );
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.0[0].label("route"), "guest_sync");
        assert_eq!(s.0[0].label("outcome"), "synced");
        assert_eq!(s.sum("relay_events_processed_total", |_| true), 3.0);
        assert_eq!(s.sum("relay_listen_channels", |_| true), 2.0);
        assert_eq!(s.0[2].label("a"), "q\"x");
    }

    #[test]
    fn real_exposition_parses() {
        let m = crate::metrics::Metrics::new();
        let s = Samples::parse(&m.render());
        assert!(s
            .family("relay_dlq_total")
            .any(|x| x.label("class") == "permanent"));
    }
}
