//! Who knew what when: the [`Knowledge`] recorder follows facts — a member joined, failed,
//! left (and, once the Serf layer has them, user events) — as they spread, and draws the
//! fraction of nodes that know each fact over time as an SVG (`--plot FILE.svg`).
//!
//! Facts are keyed by incarnation. The first `MemberJoined(X)` anywhere creates "X joined";
//! a later one at a higher incarnation (X came back) creates "X joined #2", and so on; the
//! same for failures and leaves. A node knows a join fact once it reports X alive (joined,
//! recovered or updated) at that fact's incarnation or above, and a failure or leave fact
//! once it reports that verdict at its incarnation or above. Each node counts once per fact,
//! whatever restarts it went through.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use rookery_core::{Event, Name, Timestamp};

/// What kind of news a fact is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FactKind {
    /// A member became known or came back.
    Joined,
    /// A member was declared failed.
    Failed,
    /// A member left.
    Left,
    /// Anything else a caller records with [`Knowledge::learn`] (user events, later).
    Custom,
}

/// One fact: the `nth` report of `kind` about `subject`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fact {
    /// What happened.
    pub kind: FactKind,
    /// Whom (or, for custom facts, what) it is about.
    pub subject: String,
    /// 1 for the first fact of this kind about the subject, 2 for the second (a higher
    /// incarnation), …
    pub nth: u32,
}

impl Fact {
    /// A short label: "node-7 failed", "node-7 joined #2".
    pub fn label(&self) -> String {
        let what = match self.kind {
            FactKind::Joined => "joined",
            FactKind::Failed => "failed",
            FactKind::Left => "left",
            FactKind::Custom => "",
        };
        let mut s = if what.is_empty() {
            self.subject.clone()
        } else {
            format!("{} {what}", self.subject)
        };
        if self.nth > 1 {
            let _ = write!(s, " #{}", self.nth);
        }
        s
    }
}

/// A fact and the sorted times nodes learned it.
pub type Picked = (Fact, Vec<Timestamp>);

/// Most subjects followed (joins are sampled; failures and leaves always followed up to this).
const MAX_SUBJECTS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    No,
    Yes,
    /// Followed from a failure or leave on: its first join was not counted.
    Late,
}

/// Records, for each followed fact, when each node learned it.
#[derive(Debug, Default)]
pub struct Knowledge {
    /// Members whose joins are followed: index multiple of `stride`, or the last one.
    stride: usize,
    expected: usize,
    followed: HashMap<Name, Follow>,
    subjects: usize,
    /// The incarnation of each fact, per subject and kind, ascending.
    incs: HashMap<(Name, FactKind), Vec<u32>>,
    facts: BTreeMap<Fact, FactLog>,
    end: Timestamp,
}

/// Who learned a fact when.
#[derive(Debug, Default)]
struct FactLog {
    times: Vec<(Timestamp, u32)>,
    /// Bitmap of the observers in `times`.
    seen: Vec<u64>,
}

impl FactLog {
    fn learn(&mut self, t: Timestamp, observer: u32) {
        let (w, b) = (observer as usize / 64, observer % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        if self.seen[w] & (1 << b) == 0 {
            self.seen[w] |= 1 << b;
            self.times.push((t, observer));
        }
    }
}

impl Knowledge {
    /// A recorder for a cluster of about `expected_nodes`: joins of about 32 evenly spread
    /// members are followed, every failure and leave (up to 256 members).
    pub fn new(expected_nodes: usize) -> Knowledge {
        Knowledge {
            stride: (expected_nodes / 32).max(1),
            expected: expected_nodes,
            ..Knowledge::default()
        }
    }

    /// Whether facts of `kind` about `subject` are followed, and whether its first join
    /// was missed (it became followed on a failure or leave).
    fn follows(
        &mut self,
        subject: &Name,
        kind: FactKind,
        names: &HashMap<Name, usize>,
    ) -> Option<bool> {
        match self.followed.get(subject) {
            Some(Follow::Yes) => return Some(false),
            Some(Follow::Late) => return Some(true),
            Some(Follow::No) if kind == FactKind::Joined => return None,
            _ => {}
        }
        let sampled = names.get(subject).is_some_and(|&i| {
            i % self.stride.max(1) == 0 || (self.expected > 0 && i + 1 == self.expected)
        });
        let known = self.followed.contains_key(subject);
        let f = if self.subjects >= MAX_SUBJECTS || (!sampled && kind == FactKind::Joined) {
            Follow::No
        } else if known {
            Follow::Late
        } else {
            Follow::Yes
        };
        if f != Follow::No {
            self.subjects += 1;
        }
        self.followed.insert(subject.clone(), f);
        match f {
            Follow::No => None,
            Follow::Yes => Some(false),
            Follow::Late => Some(true),
        }
    }

    /// Feed one event emitted by `observer` at `t`.
    pub(crate) fn observe(
        &mut self,
        t: Timestamp,
        observer: usize,
        event: &Event,
        names: &HashMap<Name, usize>,
    ) {
        self.end = self.end.max(t);
        // (kind, member, whether the event can create a new fact)
        let (kind, m, creates) = match event {
            Event::MemberJoined(m) => (FactKind::Joined, m, true),
            Event::MemberRecovered(m) | Event::MemberUpdated(m) => (FactKind::Joined, m, false),
            Event::MemberFailed(m) => (FactKind::Failed, m, true),
            Event::MemberLeft(m) => (FactKind::Left, m, true),
            _ => return,
        };
        let Some(late) = self.follows(&m.name, kind, names) else {
            return;
        };
        // A member followed from its failure on had a first join nobody recorded.
        let offset = u32::from(late && kind == FactKind::Joined);
        let incs = self.incs.entry((m.name.clone(), kind)).or_default();
        if creates && incs.last().is_none_or(|&last| m.incarnation > last) {
            incs.push(m.incarnation);
        }
        for (j, &inc) in incs.iter().enumerate() {
            if inc > m.incarnation {
                break;
            }
            let fact = Fact {
                kind,
                subject: m.name.to_string(),
                nth: j as u32 + 1 + offset,
            };
            self.facts
                .entry(fact)
                .or_default()
                .learn(t, observer as u32);
        }
    }

    /// Record that `observer` learned the custom fact `what` at `t` (only its first time
    /// counts).
    pub fn learn(&mut self, t: Timestamp, observer: usize, what: &str) {
        self.end = self.end.max(t);
        let fact = Fact {
            kind: FactKind::Custom,
            subject: what.to_string(),
            nth: 1,
        };
        self.facts
            .entry(fact)
            .or_default()
            .learn(t, observer as u32);
    }

    /// Every followed fact with the times nodes learned it, in time order.
    pub fn facts(&self) -> impl Iterator<Item = (&Fact, Vec<Timestamp>)> {
        self.facts.iter().map(|(f, v)| {
            let mut ts: Vec<Timestamp> = v.times.iter().map(|&(t, _)| t).collect();
            ts.sort();
            (f, ts)
        })
    }

    /// At most `max` facts worth drawing: failures and leaves first, then custom facts,
    /// rejoins and first joins, evenly spread within each kind, in order of first report.
    pub fn pick(&self, max: usize) -> Vec<Picked> {
        let mut groups: BTreeMap<(u8, bool), Vec<Picked>> = BTreeMap::new();
        for (f, ts) in self.facts() {
            let rank = match f.kind {
                FactKind::Failed => 0,
                FactKind::Left => 1,
                FactKind::Custom => 2,
                FactKind::Joined => 3,
            };
            groups
                .entry((rank, f.kind == FactKind::Joined && f.nth == 1))
                .or_default()
                .push((f.clone(), ts));
        }
        for g in groups.values_mut() {
            g.sort_by_key(|(f, ts)| (ts.first().copied(), f.clone()));
        }
        // Round-robin over the groups, each spread evenly over its members.
        let mut quota: Vec<usize> = vec![0; groups.len()];
        let sizes: Vec<usize> = groups.values().map(Vec::len).collect();
        let mut left = max;
        while left > 0 {
            let mut progressed = false;
            for (q, &s) in quota.iter_mut().zip(&sizes) {
                if left > 0 && *q < s {
                    *q += 1;
                    left -= 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        let mut out = Vec::new();
        for (g, q) in groups.into_values().zip(quota) {
            let n = g.len();
            for k in 0..q {
                let idx = if q == 1 { 0 } else { k * (n - 1) / (q - 1) };
                out.push(g[idx].clone());
            }
        }
        out.sort_by_key(|(f, ts)| (ts.first().copied(), f.clone()));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// Draw the fraction of the other `nodes − 1` nodes that know each picked fact over
    /// virtual time `0 ..= end` as a self-contained SVG document.
    pub fn to_svg(&self, title: &str, nodes: usize, end: Timestamp) -> String {
        let facts = self.pick(12);
        let end_s = (end.max(self.end).as_micros() as f64 / 1e6).max(0.001);
        let denom = nodes.saturating_sub(1).max(1) as f64;
        let (w, h) = (1000.0, 560.0);
        let (x0, y0, pw, ph) = (70.0, 50.0, 620.0, 430.0);
        let x = |t: f64| x0 + pw * (t / end_s).clamp(0.0, 1.0);
        let y = |f: f64| y0 + ph * (1.0 - f.clamp(0.0, 1.0));
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="28" font-size="16" font-weight="bold">{}</text>"#,
            escape(title)
        );
        // Grid and y ticks.
        for k in 0..=4 {
            let f = k as f64 / 4.0;
            let yy = y(f);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/>"##,
                x0 + pw
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}%</text>"#,
                x0 - 6.0,
                yy + 4.0,
                k * 25
            );
        }
        // X ticks.
        let step = nice_step(end_s / 8.0);
        let mut t = 0.0;
        while t <= end_s + 1e-9 {
            let xx = x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{y0}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/>"##,
                y0 + ph
            );
            let _ = writeln!(
                s,
                r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                y0 + ph + 18.0,
                fmt_tick(t, step)
            );
            t += step;
        }
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">virtual time (s)</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 40.0
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">fraction of the other nodes that know</text>"#,
            y0 + ph / 2.0,
            y0 + ph / 2.0
        );
        if facts.is_empty() {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no facts recorded</text>"##,
                x0 + pw / 2.0,
                y0 + ph / 2.0
            );
        }
        for (k, (fact, times)) in facts.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            let mut pts = String::new();
            let mut known = 0usize;
            let start = times.first().map_or(0.0, |t| t.as_micros() as f64 / 1e6);
            let _ = write!(pts, "{:.1},{:.1}", x(start), y(0.0));
            for t in times {
                let ts = t.as_micros() as f64 / 1e6;
                let _ = write!(pts, " {:.1},{:.1}", x(ts), y(known as f64 / denom));
                known += 1;
                let _ = write!(pts, " {:.1},{:.1}", x(ts), y(known as f64 / denom));
            }
            let _ = write!(pts, " {:.1},{:.1}", x(end_s), y(known as f64 / denom));
            let _ = writeln!(
                s,
                r#"<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>"#
            );
            let ly = y0 + 10.0 + k as f64 * 20.0;
            let lx = x0 + pw + 20.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"#,
                lx + 24.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{} ({}/{})</text>"#,
                lx + 30.0,
                ly + 4.0,
                escape(&fact.label()),
                known,
                nodes.saturating_sub(1)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

const PALETTE: [&str; 12] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let r = raw / mag;
    let m = if r <= 1.0 {
        1.0
    } else if r <= 2.0 {
        2.0
    } else if r <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn fmt_tick(t: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{t:.0}")
    } else if step >= 0.1 {
        format!("{t:.1}")
    } else {
        format!("{t:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rookery_core::{Member, MemberStatus};
    use std::sync::Arc;

    fn member(name: &str, incarnation: u32) -> Member {
        Member {
            name: name.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            status: MemberStatus::Alive,
            incarnation,
            tags: Arc::default(),
        }
    }

    #[test]
    fn facts_count_nth_reports_and_draw() {
        let names: HashMap<Name, usize> = (0..4).map(|i| (Name::new(format!("n{i}")), i)).collect();
        let mut k = Knowledge::new(4);
        let t = Timestamp::from_millis;
        k.observe(t(10), 0, &Event::MemberJoined(member("n3", 0)), &names);
        k.observe(t(20), 1, &Event::MemberJoined(member("n3", 0)), &names);
        k.observe(t(30), 1, &Event::MemberFailed(member("n3", 0)), &names);
        k.observe(t(40), 1, &Event::MemberJoined(member("n3", 1)), &names);
        // Node 0 restarted: seeing n3 again is no news, and n3 at incarnation 1 counts for
        // both join facts.
        k.observe(t(45), 0, &Event::MemberJoined(member("n3", 1)), &names);
        k.learn(t(50), 2, "event deploy");
        k.learn(t(60), 2, "event deploy");
        let facts: Vec<(Fact, Vec<Timestamp>)> = k.facts().map(|(f, ts)| (f.clone(), ts)).collect();
        let labels: Vec<String> = facts.iter().map(|(f, _)| f.label()).collect();
        assert_eq!(
            labels,
            vec!["n3 joined", "n3 joined #2", "n3 failed", "event deploy"]
        );
        assert_eq!(facts[0].1, vec![t(10), t(20)]);
        assert_eq!(facts[1].1, vec![t(40), t(45)]);
        assert_eq!(facts[3].1.len(), 1, "a custom fact counts once per node");
        let picked = k.pick(2);
        assert_eq!(picked.len(), 2);
        assert_eq!(picked[0].0.kind, FactKind::Failed, "failures first");
        let svg = k.to_svg("test <plot>", 4, t(100));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("test &lt;plot&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 4);
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(nice_step(3.7), 5.0);
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(12.0), 20.0);
    }
}
