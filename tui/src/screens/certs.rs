//! The S/MIME certificate store: per domain the count, how many can encrypt and the soonest
//! expiry (warning at 30 days, alarm at 7); a domain's certificates; one certificate in
//! full. Import a file (a path, then a password that is never shown), trust a CA file,
//! delete with confirmation.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};

use super::{Screen, cell, draw_detail, draw_table, navigate, placeholder, scroll_detail};
use crate::action::Action;
use crate::api::ApiResult;
use crate::api::types::{Cert, CertList};
use crate::app::{Ctx, Freshness, Intent, Loadable, Prompt, PromptNext, View};
use crate::keys::Command;
use crate::ui::table::{Column, col, fill};
use crate::ui::theme::Level;
use crate::ui::{RowCursor, Theme, format};
use crate::worker::Fetch;

/// Where the screen is: the domains, one domain's certificates, or one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Depth {
    #[default]
    Domains,
    Domain,
    Cert,
}

#[derive(Debug, Default)]
pub struct Certs {
    pub list: Loadable<CertList>,
    pub depth: Depth,
    pub domains: RowCursor,
    pub certs: RowCursor,
    scroll: u16,
}

/// How urgent an expiry is: expired or within 7 days, within 30 days, later.
pub fn expiry_level(not_after: i64, now: i64) -> Level {
    let days = (not_after - now).div_euclid(86_400);
    match days {
        ..7 => Level::Bad,
        7..30 => Level::Warn,
        _ => Level::Ok,
    }
}

fn expiry_text(not_after: i64, now: i64) -> String {
    let days = (not_after - now).div_euclid(86_400);
    if not_after < now {
        format!("{} expired", format::date(not_after))
    } else {
        format!("{} ({days}d)", format::date(not_after))
    }
}

const DOMAIN_COLUMNS: [Column; 4] = [
    fill("domain", 20, 0),
    col("certs", 5, 1),
    col("usable", 6, 2),
    col("soonest expiry", 18, 1),
];

const CERT_COLUMNS: [Column; 6] = [
    fill("subject", 24, 0),
    col("expires", 18, 1),
    col("enc", 3, 2),
    col("key", 3, 3),
    col("source", 9, 4),
    col("fingerprint", 16, 5),
];

/// The name of the row that holds the CA certificates.
const CA_ROW: &str = "(CA certificates)";

impl Certs {
    pub fn take(&mut self, r: ApiResult<CertList>, now: i64) {
        self.list.finish(r, now);
        let rows = self.domain_rows();
        self.domains.clamp(rows);
        let n = self.certs_here().len();
        self.certs.clamp(n);
        if n == 0 && self.depth != Depth::Domains {
            self.depth = Depth::Domains;
        }
    }

    fn domain_rows(&self) -> usize {
        self.list
            .data
            .as_ref()
            .map_or(0, |l| l.domains.len() + usize::from(!l.cas.is_empty()))
    }

    /// The certificates of the domain row under the cursor.
    fn certs_here(&self) -> &[Cert] {
        let Some(l) = &self.list.data else {
            return &[];
        };
        match l.domains.get(self.domains.row) {
            Some(d) => &d.certs,
            None => &l.cas,
        }
    }

    fn domain_name(&self) -> String {
        self.list
            .data
            .as_ref()
            .and_then(|l| l.domains.get(self.domains.row))
            .map_or(CA_ROW.to_string(), |d| d.domain.to_string())
    }

    fn cert(&self) -> Option<&Cert> {
        match self.depth {
            Depth::Domains => None,
            _ => self.certs_here().get(self.certs.row),
        }
    }

    fn cert_text(c: &Cert, now: i64, t: &Theme) -> Text<'static> {
        let label = |s: &str| Span::styled(format!("{s:<14}"), t.bold());
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut lines = vec![
            Line::from(vec![label("Subject"), Span::raw(c.subject.to_string())]),
            Line::from(vec![label("Issuer"), Span::raw(c.issuer.to_string())]),
            Line::from(vec![label("Serial"), Span::raw(c.serial.to_string())]),
            Line::from(vec![label("Fingerprint"), Span::raw(c.fingerprint.clone())]),
            Line::from(vec![
                label("Addresses"),
                Span::raw(
                    c.addresses
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ]),
            Line::from(vec![
                label("Valid from"),
                Span::raw(format::datetime(c.not_before)),
            ]),
            Line::from(vec![
                label("Expires"),
                Span::styled(
                    expiry_text(c.not_after, now),
                    t.level(expiry_level(c.not_after, now)),
                ),
            ]),
            Line::from(vec![
                label("Encryption"),
                Span::styled(
                    yes(c.usable_for_encryption).to_string(),
                    t.level(if c.usable_for_encryption {
                        Level::Ok
                    } else {
                        Level::Warn
                    }),
                ),
            ]),
            Line::from(vec![
                label("Private key"),
                Span::raw(yes(c.has_private_key)),
            ]),
            Line::from(vec![
                label("CA"),
                Span::raw(format!(
                    "{}{}",
                    yes(c.is_ca),
                    if c.explicitly_trusted {
                        " (trust anchor)"
                    } else {
                        ""
                    }
                )),
            ]),
            Line::from(vec![
                label("Source"),
                Span::raw(match &c.message_id {
                    Some(m) if !m.is_empty() => format!("{}, from message <{m}>", c.source),
                    _ => c.source.to_string(),
                }),
            ]),
            Line::from(vec![
                label("Chain"),
                Span::styled(
                    format!(
                        "{} {}",
                        if c.chain.trusted {
                            "trusted:"
                        } else {
                            "not trusted:"
                        },
                        c.chain.detail
                    ),
                    t.level(if c.chain.trusted {
                        Level::Ok
                    } else {
                        Level::Warn
                    }),
                ),
            ]),
            Line::from(vec![
                label("Revocation"),
                Span::styled(
                    format!("{} {}", c.revocation.state, c.revocation.detail),
                    t.level(match c.revocation.state.as_str() {
                        "revoked" => Level::Bad,
                        "unknown" => Level::Warn,
                        _ => Level::Plain,
                    }),
                ),
            ]),
        ];
        for p in &c.encryption_problems {
            lines.push(Line::from(vec![
                label("Not for enc."),
                Span::styled(p.to_string(), t.warn()),
            ]));
        }
        for p in &c.signing_problems {
            lines.push(Line::from(vec![
                label("Not for sig."),
                Span::styled(p.to_string(), t.warn()),
            ]));
        }
        Text::from(lines)
    }
}

impl Screen for Certs {
    fn on_command(&mut self, cmd: Command, ctx: &Ctx) -> Vec<Intent> {
        match self.depth {
            Depth::Cert if scroll_detail(&mut self.scroll, cmd) => return Vec::new(),
            Depth::Domains => {
                let n = self.domain_rows();
                if navigate(&mut self.domains, cmd, n) {
                    return Vec::new();
                }
            }
            Depth::Domain => {
                let n = self.certs_here().len();
                if navigate(&mut self.certs, cmd, n) {
                    return Vec::new();
                }
            }
            Depth::Cert => {}
        }
        match cmd {
            Command::Open => {
                self.depth = match self.depth {
                    Depth::Domains if !self.certs_here().is_empty() => {
                        self.certs = RowCursor::default();
                        Depth::Domain
                    }
                    Depth::Domain if self.cert().is_some() => {
                        self.scroll = 0;
                        Depth::Cert
                    }
                    d => d,
                };
                Vec::new()
            }
            Command::Back => {
                self.depth = match self.depth {
                    Depth::Cert => Depth::Domain,
                    _ => Depth::Domains,
                };
                Vec::new()
            }
            Command::Import => vec![Intent::Ask(Prompt::new(
                "Import a certificate",
                "File (PEM, DER, PKCS#7 or PKCS#12), a path on this machine",
                PromptNext::ImportPath,
            ))],
            Command::TrustCa => vec![Intent::Ask(Prompt::new(
                "Trust CA certificates",
                "File with the CA certificate(s), a path on this machine",
                PromptNext::TrustCaPath,
            ))],
            Command::Delete => match self.cert() {
                Some(c) => vec![Intent::Act(Action::CertDelete {
                    fingerprint: c.fingerprint.clone(),
                    subject: c.subject.to_string(),
                    has_private_key: c.has_private_key,
                })],
                None => vec![Intent::Say(
                    "open a domain (Enter) and choose a certificate to delete".into(),
                )],
            },
            _ => {
                let _ = ctx;
                Vec::new()
            }
        }
    }

    fn refresh(&self, _ctx: &Ctx) -> Vec<Fetch> {
        vec![Fetch::Certs]
    }

    fn freshness(&self) -> Freshness<'_> {
        self.list.freshness()
    }

    fn render(&mut self, frame: &mut Frame, area: Rect, view: &View) {
        let t = view.theme;
        let now = view.now;
        let Some(list) = &self.list.data else {
            placeholder(frame, area, t, self.list.loading, self.list.error.as_ref());
            return;
        };
        match self.depth {
            Depth::Domains => {
                if list.domains.is_empty() && list.cas.is_empty() {
                    frame.render_widget(Line::raw("No certificates. i imports a file."), area);
                    return;
                }
                let n = self.domain_rows();
                draw_table(frame, area, &DOMAIN_COLUMNS, n, &mut self.domains, t, |i| {
                    let (name, certs, count, usable) = match list.domains.get(i) {
                        Some(d) => (
                            d.domain.to_string(),
                            &d.certs,
                            d.certificates,
                            d.usable_for_encryption.to_string(),
                        ),
                        None => (
                            CA_ROW.to_string(),
                            &list.cas,
                            list.cas.len(),
                            "-".to_string(),
                        ),
                    };
                    let soonest = certs.iter().map(|c| c.not_after).min();
                    let expiry = match soonest {
                        Some(at) => {
                            cell(expiry_text(at, now)).style(t.level(expiry_level(at, now)))
                        }
                        None => cell(""),
                    };
                    let usable_style = if usable == "0" {
                        t.warn()
                    } else {
                        Style::default()
                    };
                    (
                        vec![
                            cell(name),
                            cell(format!("{count:>5}")),
                            cell(format!("{usable:>6}")).style(usable_style),
                            expiry,
                        ],
                        Style::default(),
                    )
                });
            }
            Depth::Domain => {
                let title = format!("{} — Enter: details, Esc: back", self.domain_name());
                let [head, rest] = ratatui::layout::Layout::vertical([
                    ratatui::layout::Constraint::Length(1),
                    ratatui::layout::Constraint::Fill(1),
                ])
                .areas(area);
                frame.render_widget(Line::styled(title, t.bold()), head);
                let certs: Vec<Cert> = self.certs_here().to_vec();
                draw_table(
                    frame,
                    rest,
                    &CERT_COLUMNS,
                    certs.len(),
                    &mut self.certs,
                    t,
                    |i| {
                        let c = &certs[i];
                        (
                            vec![
                                cell(c.subject.to_string()),
                                cell(expiry_text(c.not_after, now))
                                    .style(t.level(expiry_level(c.not_after, now))),
                                cell(if c.usable_for_encryption { "yes" } else { "no" }),
                                cell(if c.has_private_key { "yes" } else { "" }),
                                cell(c.source.to_string()),
                                cell(c.fingerprint.chars().take(16).collect::<String>()),
                            ],
                            Style::default(),
                        )
                    },
                );
            }
            Depth::Cert => {
                if let Some(c) = self.cert() {
                    let text = Self::cert_text(c, now, t);
                    draw_detail(frame, area, "Certificate (Esc: back)", text, self.scroll, t);
                }
            }
        }
    }
}
