//! The dashboard: messages per minute by verdict over the last hour (from the differences
//! between samples of the gateway's counters), the queue, what is held, clamd's health.

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::{Screen, placeholder};
use crate::api::ApiResult;
use crate::api::types::{Counters, Health};
use crate::app::{Ctx, Freshness, Intent, Loadable, SAMPLE_SECS, View};
use crate::keys::Command;
use crate::ui::format;
use crate::ui::theme::Level;
use crate::worker::Fetch;

/// The verdicts the gateway counts, in the order shown.
pub const VERDICTS: [&str; 5] = ["accept", "tag", "quarantine", "reject", "tempfail"];
/// Minutes of history kept.
pub const MINUTES: usize = 60;

/// Messages per minute by verdict, built from successive counter samples.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// The last sample: the gateway's uptime and its totals by verdict.
    last: Option<(u64, [u64; 5])>,
    /// (minute since the epoch, messages in that minute by verdict), oldest first.
    minutes: VecDeque<(i64, [u64; 5])>,
}

fn totals(c: &Counters) -> [u64; 5] {
    let mut t = [0; 5];
    for m in &c.messages {
        if let Some(i) = VERDICTS.iter().position(|v| *v == m.verdict) {
            t[i] += m.count;
        }
    }
    t
}

impl Rates {
    /// Take a sample taken at `now`: what arrived since the last one counts in `now`'s minute.
    pub fn sample(&mut self, c: &Counters, now: i64) {
        let cur = totals(c);
        if let Some((uptime, prev)) = self.last {
            // A gateway that restarted counts from zero again.
            let restarted = c.uptime_secs < uptime;
            let minute = now.div_euclid(60);
            let mut delta = [0; 5];
            for i in 0..5 {
                delta[i] = if restarted {
                    cur[i]
                } else {
                    cur[i].saturating_sub(prev[i])
                };
            }
            match self.minutes.back_mut() {
                Some((m, counts)) if *m == minute => {
                    for i in 0..5 {
                        counts[i] += delta[i];
                    }
                }
                _ => self.minutes.push_back((minute, delta)),
            }
            while self
                .minutes
                .front()
                .is_some_and(|(m, _)| *m <= minute - MINUTES as i64)
            {
                self.minutes.pop_front();
            }
        }
        self.last = Some((c.uptime_secs, cur));
    }

    /// The last hour for verdict `v`, one value a minute, oldest first, ending with `now`'s
    /// (unfinished) minute.
    pub fn series(&self, v: usize, now: i64) -> Vec<u64> {
        let current = now.div_euclid(60);
        (0..MINUTES as i64)
            .rev()
            .map(|back| {
                let m = current - back;
                self.minutes
                    .iter()
                    .find(|(k, _)| *k == m)
                    .map_or(0, |(_, c)| c[v])
            })
            .collect()
    }

    /// Messages in the last finished minute for verdict `v`.
    pub fn last_minute(&self, v: usize, now: i64) -> u64 {
        let m = now.div_euclid(60) - 1;
        self.minutes
            .iter()
            .find(|(k, _)| *k == m)
            .map_or(0, |(_, c)| c[v])
    }

    /// Whether a rate can be told yet (two samples were taken).
    pub fn started(&self) -> bool {
        !self.minutes.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Dashboard {
    pub counters: Loadable<Counters>,
    /// Who the gateway is (from `/v1/health`).
    pub health: Option<Health>,
    pub rates: Rates,
}

impl Dashboard {
    pub fn take_counters(&mut self, r: ApiResult<Counters>, now: i64) {
        if let Ok(c) = &r {
            self.rates.sample(c, now);
        }
        self.counters.finish(r, now);
    }
}

fn verdict_level(v: &str) -> Level {
    match v {
        "accept" => Level::Ok,
        "quarantine" | "tempfail" => Level::Warn,
        "reject" => Level::Bad,
        _ => Level::Plain,
    }
}

impl Screen for Dashboard {
    fn on_command(&mut self, _cmd: Command, _ctx: &Ctx) -> Vec<Intent> {
        Vec::new()
    }

    fn refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        vec![Fetch::Counters]
    }

    fn auto_refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        // The app samples the counters on its own clock.
        Vec::new()
    }

    fn freshness(&self) -> Freshness<'_> {
        self.counters.freshness()
    }

    fn render(&mut self, frame: &mut Frame, area: Rect, view: &View) {
        let t = view.theme;
        let Some(c) = &self.counters.data else {
            placeholder(
                frame,
                area,
                t,
                self.counters.loading,
                self.counters.error.as_ref(),
            );
            return;
        };
        let [title, rates, _, facts] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(VERDICTS.len() as u16),
            Constraint::Length(1),
            Constraint::Fill(1),
        ])
        .areas(area);
        let note = if self.rates.started() {
            format!("(last minute; a sample every {SAMPLE_SECS} s)")
        } else {
            format!("(rates after the next sample, in {SAMPLE_SECS} s)")
        };
        frame.render_widget(
            Line::from(vec![
                Span::styled("Messages per minute, last hour ", t.header()),
                Span::styled(note, t.dim()),
            ]),
            title,
        );
        let series: Vec<Vec<u64>> = (0..VERDICTS.len())
            .map(|v| self.rates.series(v, view.now))
            .collect();
        let max = series.iter().flatten().copied().max().unwrap_or(0).max(1);
        let rows = Layout::vertical(vec![Constraint::Length(1); VERDICTS.len()]).split(rates);
        for (v, row) in rows.iter().enumerate() {
            let [label, spark] =
                Layout::horizontal([Constraint::Length(22), Constraint::Fill(1)]).areas(*row);
            frame.render_widget(
                Line::from(vec![
                    Span::styled(
                        format!("{:<11}", VERDICTS[v]),
                        t.level(verdict_level(VERDICTS[v])),
                    ),
                    Span::raw(format!("{:>4}/min ", self.rates.last_minute(v, view.now))),
                ]),
                label,
            );
            // The newest minutes that fit, oldest on the left.
            let data = &series[v];
            let shown = &data[data.len().saturating_sub(usize::from(spark.width))..];
            frame.render_widget(
                Sparkline::default()
                    .data(shown)
                    .max(max)
                    .style(t.level(verdict_level(VERDICTS[v]))),
                spark,
            );
        }
        let mut lines = Vec::new();
        let q = &c.queue;
        let oldest = q.oldest_age_secs.map_or("none waiting".to_string(), |a| {
            format!("oldest {}", format::age(a))
        });
        let queue_level = if q.oldest_age_secs.unwrap_or(0) > 3600 {
            Level::Warn
        } else {
            Level::Plain
        };
        lines.push(Line::from(vec![
            Span::styled("Queue      ", t.bold()),
            Span::raw(format!("{} waiting, ", q.queued)),
            Span::styled(oldest, t.level(queue_level)),
        ]));
        lines.push(Line::from(vec![
            Span::styled("Held now   ", t.bold()),
            Span::styled(
                q.held.to_string(),
                t.level(if q.held > 0 {
                    Level::Warn
                } else {
                    Level::Plain
                }),
            ),
        ]));
        let clamd = match &c.clamd {
            None => vec![Span::styled("not enabled, or not probed yet", t.dim())],
            Some(s) if s.up => {
                let mut v = vec![Span::styled("up", t.ok())];
                if !s.version.is_empty() {
                    v.push(Span::raw(format!(", {}", s.version)));
                }
                if !s.signature_date.is_empty() {
                    v.push(Span::raw(format!(", signatures of {}", s.signature_date)));
                }
                if let Some(ms) = s.latency_ms {
                    v.push(Span::raw(format!(", {ms:.1} ms")));
                }
                v
            }
            Some(_) => vec![Span::styled(
                "DOWN: mail is tempfailed or passed by fail_mode",
                t.bad(),
            )],
        };
        let mut clamd_line = vec![Span::styled("ClamAV     ", t.bold())];
        clamd_line.extend(clamd);
        lines.push(Line::from(clamd_line));
        let dns = match &c.dns {
            None => vec![Span::styled("probe off, or not probed yet", t.dim())],
            Some(d) if d.up => {
                let mut v = vec![Span::styled("up", t.ok())];
                if let Some(ms) = d.latency_ms {
                    v.push(Span::raw(format!(", {ms:.1} ms")));
                }
                v.push(Span::styled(
                    format!(" (probed {} ago)", format::age(d.age_secs)),
                    t.dim(),
                ));
                v
            }
            Some(d) => vec![
                Span::styled("DOWN: authentication and MX lookups tempfail", t.bad()),
                Span::raw(format!(
                    " ({})",
                    d.error.as_ref().map_or("no answer", |e| e.as_str())
                )),
            ],
        };
        let mut dns_line = vec![Span::styled("DNS        ", t.bold())];
        dns_line.extend(dns);
        lines.push(Line::from(dns_line));
        let tls = if c.tls.connections == 0 {
            Span::styled("no connections yet", t.dim())
        } else {
            Span::raw(format!(
                "{:.0} % of {} connections used STARTTLS",
                c.tls.tls as f64 * 100.0 / c.tls.connections as f64,
                c.tls.connections
            ))
        };
        lines.push(Line::from(vec![Span::styled("TLS        ", t.bold()), tls]));
        if let Some(h) = &self.health {
            lines.push(Line::from(vec![
                Span::styled("Gateway    ", t.bold()),
                Span::raw(format!("{} (Portcullis {})", h.hostname, h.version)),
            ]));
        }
        let total_messages: u64 = totals(c).iter().sum();
        lines.push(Line::from(vec![
            Span::styled("Since start", t.bold()),
            Span::raw(format!(
                " {total_messages} messages, up {}",
                format::age(c.uptime_secs as i64)
            )),
        ]));
        let mut top = vec![Line::styled("Top symbols today (UTC)", t.header())];
        if c.symbols.is_empty() {
            top.push(Line::styled("  none yet", t.dim()));
        }
        let mut symbols = c.symbols.clone();
        symbols.sort_by_key(|s| std::cmp::Reverse(s.count));
        for s in symbols.iter().take(8) {
            top.push(Line::raw(format!(
                "  {:<28} {:>8}",
                s.name.as_str(),
                s.count
            )));
        }
        // Side by side where there is room; else the symbols below the facts.
        if facts.width >= 120 {
            let [left, right] =
                Layout::horizontal([Constraint::Fill(1), Constraint::Length(42)]).areas(facts);
            frame.render_widget(Paragraph::new(lines), left);
            frame.render_widget(Paragraph::new(top), right);
        } else {
            lines.push(Line::raw(""));
            lines.extend(top);
            frame.render_widget(Paragraph::new(lines), facts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::VerdictCount;

    fn counters(accept: u64, reject: u64, uptime: u64) -> Counters {
        Counters {
            messages: vec![
                VerdictCount {
                    direction: "inbound".into(),
                    verdict: "accept".into(),
                    count: accept,
                },
                VerdictCount {
                    direction: "outbound".into(),
                    verdict: "accept".into(),
                    count: 1,
                },
                VerdictCount {
                    direction: "inbound".into(),
                    verdict: "reject".into(),
                    count: reject,
                },
            ],
            uptime_secs: uptime,
            ..Counters::default()
        }
    }

    #[test]
    fn rates_are_the_differences_between_samples_by_minute() {
        let mut r = Rates::default();
        let t0 = 1_800_000_000;
        r.sample(&counters(100, 10, 1000), t0);
        assert!(!r.started());
        r.sample(&counters(110, 10, 1010), t0 + 10);
        r.sample(&counters(130, 13, 1050), t0 + 50);
        r.sample(&counters(131, 13, 1070), t0 + 70);
        // Minute t0: 30 accepted, 3 rejected; the next minute: 1 so far.
        assert_eq!(r.last_minute(0, t0 + 70), 30);
        assert_eq!(r.last_minute(3, t0 + 70), 3);
        let s = r.series(0, t0 + 70);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(&s[MINUTES - 2..], &[30, 1]);
        // A restart counts from zero.
        r.sample(&counters(4, 0, 5), t0 + 80);
        assert_eq!(r.series(0, t0 + 80)[MINUTES - 1], 1 + 5);
        // An hour later the old minutes are gone.
        r.sample(&counters(4, 0, 3700), t0 + 3700);
        assert_eq!(r.series(0, t0 + 3700).iter().sum::<u64>(), 0);
    }
}
