//! The pipeline: the ordered stages a message passes through after DATA, and the verdict.
//!
//! The order is written once per direction, in [`inbound`] and [`outbound`]. Stages report
//! symbols; [`verdict`] alone turns the score card into an action. A stage that fails is
//! handled by its configured fail mode here, in one place.

pub mod dkim_sign;
pub mod inbound;
pub mod learning;
pub mod outbound;
mod step;
pub mod verdict;

use step::Phase;
pub use step::Step;

use std::collections::BTreeMap;
use std::time::Instant;

use filters::{Action, Direction, Envelope, Facts, MessageContext, ScoreCard, Stage, Symbol};

use std::sync::Arc;
use std::time::Duration;

use filters::clamav::ClamavStage;
use filters::clamav::clamd::{Clamd, Endpoint};

use crate::config::{Config, FailMode, OversizeAction, VerdictConfig, VirusAction};
use crate::metrics::Metrics;
pub use crate::queue::MessageCopy;
use crate::smime::inbound::{InboundResult, SmimeInbound};
use crate::smime::outbound::SmimeOutbound;

/// The From domain, when a valid signature with a trusted chain names the From address.
fn smime_authenticated_domain(
    unwrapped: &InboundResult,
    parsed: Option<&mail_parser::Message<'_>>,
) -> Option<String> {
    let from = parsed?.from()?.first()?.address()?.to_ascii_lowercase();
    unwrapped
        .harvestable
        .iter()
        .any(|sig| {
            sig.status == crate::smime::engine::SignatureStatus::Valid
                && sig
                    .signer_address
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&from))
        })
        .then(|| filters::domain_of(&from))
}

impl Outcome {
    /// The verdict as the queue stores it.
    pub fn verdict(&self) -> crate::queue::Verdict<'_> {
        crate::queue::Verdict {
            score: self.card.score(),
            action: self.action.as_str(),
            tagged: self.action == Action::Tag,
            symbols: self.card.summary(),
            points: self
                .card
                .symbols
                .iter()
                .map(|s| quarantine::SymbolPoints {
                    name: s.name.to_string(),
                    points: s.points,
                })
                .collect(),
            fields: &self.headers,
            copies: &self.copies,
        }
    }
}

/// A stage with its configured fail mode.
pub struct ConfiguredStage {
    pub stage: Box<dyn Stage>,
    pub fail_mode: FailMode,
}

/// Add `stage` to `steps` as a check unless `[stages.NAME] enabled = false`.
pub fn push_check(steps: &mut Vec<Step>, config: &Config, stage: impl Stage + 'static) {
    let settings = config.stage(stage.name());
    if settings.enabled {
        steps.push(Step::Check(ConfiguredStage {
            stage: Box::new(stage),
            fail_mode: settings.fail_mode,
        }));
    }
}

/// What the pipeline concluded about one message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: Action,
    pub card: ScoreCard,
    /// For the log: which stage failed, or what decided.
    pub reason: String,
    /// Header fields the stages contributed (e.g. Authentication-Results,
    /// X-Portcullis-SMIME), in stage order; the session prepends them after its Received
    /// line, to every copy.
    pub headers: Vec<String>,
    /// What to store: at least one copy. Inbound: one, holding the S/MIME plaintext when
    /// the message was decrypted. Outbound: one per S/MIME treatment (e.g. a copy encrypted
    /// for each recipient certificate, a clear one for the rest).
    pub copies: Vec<MessageCopy>,
    /// What the stages established (authenticated sender, spam probability), for learning.
    pub facts: Facts,
}

/// Clients shared by the stages of both directions, built once from the config.
#[derive(Default)]
pub struct Resources {
    pub clamd: Option<Arc<Clamd>>,
    /// The Bayes model (loaded from the store by the gateway); `None`: no Bayes stage.
    pub bayes: Option<filters::bayes::SharedModel>,
    /// Resolver + record caches of the auth stage (`gateway::Loaded`); `None`: no
    /// auth stage.
    pub auth_dns: Option<Arc<filters::auth::AuthDns>>,
    /// Outbound DKIM keys (`gateway::Loaded`); `None`: outbound mail is not signed.
    pub dkim_signer: Option<Arc<dkim_sign::OutboundSigner>>,
    /// The trust memory (loaded by the gateway); `None`: no trust stage, no TLS history.
    pub trust: Option<Arc<filters::trust::TrustBook>>,
    /// What stored messages teach (trust, Bayes autolearn); built by the gateway.
    pub learning: learning::Learning,
    /// Keys and certificates for S/MIME (the certificate store); `None`: no S/MIME.
    pub keyring: Option<Arc<dyn crate::smime::keyring::Keyring>>,
    /// Operators' allow and block lists (loaded by the gateway); `None`: no lists stage.
    pub lists: Option<filters::lists::LiveLists>,
}

impl Resources {
    pub fn from_config(config: &Config) -> Resources {
        let c = &config.clamav;
        let clamd = c.enabled.then(|| {
            let endpoint = match &c.socket {
                Some(p) => Endpoint::Unix(p.clone()),
                None => Endpoint::Tcp(c.address.clone()),
            };
            Arc::new(Clamd::new(
                endpoint,
                Duration::from_millis(c.connect_timeout_ms),
                Duration::from_secs(c.scan_timeout_secs),
                c.max_connections,
            ))
        });
        Resources {
            clamd,
            ..Resources::default()
        }
    }

    /// The auth stage (SPF, DKIM, DMARC, ARC), when `[auth] enabled`.
    pub fn auth_stage(&self, config: &Config) -> Option<filters::auth::AuthStage> {
        let a = &config.auth;
        Some(filters::auth::AuthStage {
            dns: self.auth_dns.clone()?,
            hostname: config.hostname.clone(),
            dmarc_reject_action: a.dmarc_reject_action.forced(),
            dmarc_quarantine_action: a.dmarc_quarantine_action.forced(),
            timeout: Duration::from_secs(a.timeout_secs),
            limits: a.limits(),
        })
    }

    /// The trust stage, when `[trust] enabled` and the book was loaded.
    pub fn trust_stage(&self, config: &Config) -> Option<filters::trust::TrustStage> {
        let book = self.trust.clone().filter(|_| config.trust.enabled)?;
        Some(filters::trust::TrustStage {
            book,
            now: filters::trust::unix_now,
        })
    }

    /// The allow and block lists, when the gateway loaded them.
    pub fn lists_stage(&self) -> Option<filters::lists::ListsStage> {
        Some(filters::lists::ListsStage {
            lists: self.lists.clone()?,
            now: filters::unix_now,
        })
    }

    /// TLS reputation, with the domains' TLS history and reverse DNS when available.
    pub fn tls_stage(&self) -> filters::tls::TlsReputation {
        filters::tls::TlsReputation {
            book: self.trust.clone(),
            dns: self.auth_dns.clone(),
        }
    }

    /// S/MIME on inbound mail, when `[smime] enabled` and the certificate store is open.
    pub fn smime_inbound(&self, config: &Config) -> Option<Arc<SmimeInbound>> {
        let keyring = self.keyring.clone()?;
        (config.smime.enabled && config.stage("smime").enabled)
            .then(|| Arc::new(SmimeInbound::new(keyring, config.smime.clone())))
    }

    /// S/MIME by policy on outbound mail, when `[smime] enabled` and the store is open.
    pub fn smime_outbound(&self, config: &Config) -> Option<Arc<SmimeOutbound>> {
        let keyring = self.keyring.clone()?;
        (config.smime.enabled && config.stage("smime").enabled)
            .then(|| Arc::new(SmimeOutbound::new(keyring, config.smime.clone())))
    }

    /// The Bayes stage, when `[bayes] enabled` and a model was loaded.
    pub fn bayes_stage(&self, config: &Config) -> Option<filters::bayes::Bayes> {
        let model = self.bayes.clone().filter(|_| config.bayes.enabled)?;
        Some(filters::bayes::Bayes::new(model, config.bayes.settings()))
    }

    /// The ClamAV stage, when scanning is enabled.
    pub fn clamav_stage(&self, config: &Config) -> Option<ClamavStage> {
        let c = &config.clamav;
        Some(ClamavStage {
            clamd: self.clamd.clone()?,
            virus_action: match c.virus_action {
                VirusAction::Reject => Action::Reject,
                VirusAction::Quarantine => Action::Quarantine,
            },
            max_stream_size: c.max_stream_size,
            oversize_action: match c.oversize_action {
                OversizeAction::Tempfail => filters::clamav::OversizeAction::Tempfail,
                OversizeAction::Accept => filters::clamav::OversizeAction::Accept,
                OversizeAction::Reject => filters::clamav::OversizeAction::Reject,
            },
        })
    }
}

pub struct Pipeline {
    inbound: Vec<Step>,
    outbound: Vec<Step>,
    thresholds: VerdictConfig,
    points: BTreeMap<String, f64>,
    metrics: Metrics,
    learning: learning::Learning,
    /// Outbound S/MIME, for the session's check at RCPT TO; `None` when S/MIME is off.
    smime_out: Option<Arc<SmimeOutbound>>,
}

impl Pipeline {
    pub fn from_config(config: &Config, resources: &Resources, metrics: Metrics) -> Pipeline {
        let inbound = inbound::steps(config, resources);
        let outbound = outbound::steps(config, resources);
        for (direction, steps) in [("inbound", &inbound), ("outbound", &outbound)] {
            if let Err(e) = step::check_order(steps) {
                // The lists are code, not configuration: a wrong order is a bug.
                panic!("the {direction} order is not valid: {e}");
            }
        }
        Pipeline {
            inbound,
            outbound,
            thresholds: config.verdict.clone(),
            points: config.symbols.clone(),
            metrics,
            learning: resources.learning.clone(),
            smime_out: resources.smime_outbound(config),
        }
    }

    /// The message got its final answer (`stored`: 250 after the commit): let the gateway
    /// learn from it. Returns at once.
    pub fn learn(&self, envelope: &Envelope, outcome: &Outcome, stored: bool, message: &[u8]) {
        self.learning
            .after_verdict(envelope, outcome, stored, message);
    }

    /// Outbound S/MIME (for the session's RCPT TO check); `None` when S/MIME is off.
    pub fn smime_outbound(&self) -> Option<&SmimeOutbound> {
        self.smime_out.as_deref()
    }

    /// Run the steps of the message's direction, in their order, and decide. The order
    /// (`inbound.rs`, `outbound.rs`) has three phases, checked when the pipeline is built:
    /// steps that change what is judged, the checks and the verdict, steps on what will be
    /// stored.
    pub async fn run(&self, envelope: &Envelope, raw: &[u8]) -> Outcome {
        let steps = match envelope.direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        let mut card = ScoreCard::default();
        let mut headers = Vec::new();
        let mut unwrapped = InboundResult::default();
        let phase_of = |p: Phase| steps.iter().filter(move |s| s.phase() == p);

        // 1. What the checks judge: inbound, the S/MIME plaintext.
        for step in phase_of(Phase::Prepare) {
            if let Err(out) = self
                .prepare(step, envelope, raw, &mut unwrapped, &mut card, &mut headers)
                .await
            {
                return out;
            }
        }

        // 2. The checks, in order, then the verdict.
        let judged = unwrapped.replacement.as_deref().unwrap_or(raw);
        let parsed = mail_parser::MessageParser::default().parse(judged);
        // What the stages establish for each other; a valid, trusted S/MIME signature of the
        // From address authenticates its domain like an aligned DKIM signature.
        let mut facts = Facts {
            authenticated_domain: smime_authenticated_domain(&unwrapped, parsed.as_ref()),
            ..Facts::default()
        };
        let mut decided = None;
        for step in phase_of(Phase::Judge) {
            match step {
                // An operator's allow entry overrides the spam filters' opinion.
                Step::Check(s) if facts.allow_listed && s.stage.is_spam_filter() => {}
                Step::Check(s) => {
                    let started = Instant::now();
                    let ctx = MessageContext {
                        envelope,
                        raw: judged,
                        // DKIM covers what was sent (the encrypted form); kept for auth.
                        wire: raw,
                        parsed: parsed.as_ref(),
                        facts: &facts,
                    };
                    let result = s.stage.check_with_headers(&ctx).await;
                    self.metrics
                        .stage_time(s.stage.name(), started.elapsed().as_secs_f64());
                    match result {
                        Ok(findings) => {
                            for sym in findings.symbols {
                                card.add(self.weigh(sym));
                            }
                            headers.extend(findings.headers);
                            facts.merge(findings.facts);
                        }
                        Err(e) => {
                            if let Some(out) = self.stage_failed(
                                s.stage.name(),
                                s.fail_mode,
                                &e.to_string(),
                                &mut card,
                                &headers,
                            ) {
                                return out;
                            }
                        }
                    }
                }
                Step::Verdict => decided = Some(verdict::decide(&card, &self.thresholds)),
                _ => unreachable!("check_order keeps other steps out of the judge phase"),
            }
        }
        let (action, reason) = decided.expect("check_order requires a verdict step");
        let message_id = parsed
            .as_ref()
            .and_then(|m| m.message_id())
            .unwrap_or_default()
            .to_string();
        drop(parsed);

        // 3. What will be stored: the copies, then the steps that act on them.
        let harvestable = std::mem::take(&mut unwrapped.harvestable);
        let mut copies = first_copies(envelope, unwrapped);
        let stored = matches!(action, Action::Accept | Action::Tag | Action::Quarantine);
        for step in phase_of(Phase::Store) {
            match step {
                // Partners' certificates are learnt only from mail we let through.
                Step::Harvest(smime)
                    if matches!(action, Action::Accept | Action::Tag)
                        && !harvestable.is_empty() =>
                {
                    smime.harvest(&harvestable, &message_id).await;
                }
                Step::Protect(smime) if stored => {
                    let started = Instant::now();
                    let result = smime.protect(envelope, raw).await;
                    self.metrics
                        .stage_time("smime", started.elapsed().as_secs_f64());
                    match result {
                        Ok(Some(protected)) => {
                            copies = protected.copies;
                            for sym in protected.symbols {
                                card.add(self.weigh(sym));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            // Always 451 here, whatever the fail mode: passing would send
                            // in clear what policy wants signed or encrypted.
                            if let Some(out) = self.stage_failed(
                                "smime",
                                FailMode::Tempfail,
                                &format!("{e:#}"),
                                &mut card,
                                &headers,
                            ) {
                                return out;
                            }
                        }
                    }
                }
                // Each copy signed as it will leave.
                Step::DkimSign(signer) if stored => {
                    let started = Instant::now();
                    for copy in &mut copies {
                        copy.headers
                            .extend(signer.sign(copy.body.as_deref().unwrap_or(raw)));
                    }
                    self.metrics
                        .stage_time("dkim_sign", started.elapsed().as_secs_f64());
                }
                _ => {}
            }
        }
        if action == Action::Quarantine {
            for copy in &mut copies {
                copy.hold = Some(reason.clone());
            }
        }
        Outcome {
            action,
            card,
            reason,
            headers,
            facts,
            copies,
        }
    }

    /// A step that changes what the checks judge. Inbound: S/MIME unwrap (decrypt, verify).
    /// Outbound: the S/MIME precheck (mail the user protected already, a required signature
    /// we cannot make). Its symbols and result header go on the card; `Err`: stop with this
    /// outcome (`[stages.smime] fail_mode`).
    async fn prepare(
        &self,
        step: &Step,
        envelope: &Envelope,
        raw: &[u8],
        unwrapped: &mut InboundResult,
        card: &mut ScoreCard,
        headers: &mut Vec<String>,
    ) -> Result<(), Outcome> {
        let started = Instant::now();
        let (result, fail_mode) = match step {
            Step::Unwrap { smime, fail_mode } => (smime.unwrap(envelope, raw).await, *fail_mode),
            Step::Precheck { smime, fail_mode } => (
                smime
                    .precheck(envelope, raw)
                    .await
                    .map(|symbols| InboundResult {
                        symbols,
                        ..InboundResult::default()
                    }),
                *fail_mode,
            ),
            _ => unreachable!("check_order keeps other steps out of the prepare phase"),
        };
        self.metrics
            .stage_time("smime", started.elapsed().as_secs_f64());
        let mut found = match result {
            Ok(found) => found,
            Err(e) => {
                let error = format!("{e:#}");
                if let Some(out) = self.stage_failed("smime", fail_mode, &error, card, headers) {
                    return Err(out);
                }
                InboundResult::default()
            }
        };
        for sym in std::mem::take(&mut found.symbols) {
            card.add(self.weigh(sym));
        }
        // Split delivery: each copy gets its own result header (see `first_copies`).
        if found.readers.is_none() {
            headers.extend(found.header.take());
        }
        *unwrapped = found;
        Ok(())
    }

    /// A stage could not do its job: its fail mode decides. `Some`: stop with this outcome
    /// (tempfail); `None`: go on, with `STAGE_FAILED_OPEN` on the card.
    fn stage_failed(
        &self,
        name: &str,
        fail_mode: FailMode,
        error: &str,
        card: &mut ScoreCard,
        headers: &[String],
    ) -> Option<Outcome> {
        match fail_mode {
            FailMode::Tempfail => Some(Outcome {
                action: Action::Tempfail,
                card: card.clone(),
                reason: format!("stage {name} failed: {error}"),
                headers: headers.to_vec(),
                copies: vec![MessageCopy::default()],
                facts: Facts::default(),
            }),
            FailMode::Open => {
                tracing::warn!(
                    stage = name,
                    error,
                    "stage failed, passing (fail_mode = open)"
                );
                card.add(Symbol::new("STAGE_FAILED_OPEN", format!("{name}: {error}")));
                None
            }
        }
    }

    /// Apply the configured points override of a symbol.
    fn weigh(&self, mut sym: Symbol) -> Symbol {
        if let Some(p) = self.points.get(sym.name) {
            sym.points = *p * sym.scale;
        }
        sym
    }
}

/// The copies to store before any outbound treatment: one, holding the S/MIME plaintext when
/// the message was decrypted — or, when only some recipients' keys opened it, the plaintext
/// for those and the message as received (with its own result header) for the others.
fn first_copies(envelope: &Envelope, unwrapped: InboundResult) -> Vec<MessageCopy> {
    match (unwrapped.readers, unwrapped.replacement) {
        (Some(readers), Some(plain)) => {
            let others: Vec<String> = envelope
                .rcpt_to
                .iter()
                .filter(|r| !readers.contains(r))
                .cloned()
                .collect();
            vec![
                MessageCopy {
                    recipients: Some(readers),
                    body: Some(plain),
                    headers: unwrapped.header.into_iter().collect(),
                    hold: None,
                },
                MessageCopy {
                    recipients: Some(others),
                    body: None,
                    headers: unwrapped.others_header.into_iter().collect(),
                    hold: None,
                },
            ]
        }
        (_, replacement) => vec![MessageCopy {
            recipients: None,
            body: replacement,
            headers: Vec::new(),
            hold: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::{StageError, StageFuture};

    struct Failing;
    impl Stage for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn check<'a>(&'a self, _: &'a MessageContext<'a>) -> StageFuture<'a> {
            Box::pin(async { Err(StageError("service down".into())) })
        }
    }

    fn envelope() -> Envelope {
        Envelope {
            direction: Direction::Inbound,
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "client.test".into(),
            mail_from: "a@b.test".into(),
            rcpt_to: vec!["u@example.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
        }
    }

    fn pipeline(config: &Config, extra: Option<FailMode>) -> Pipeline {
        let mut p = Pipeline::from_config(config, &Resources::default(), Metrics::new());
        if let Some(fail_mode) = extra {
            // A check of its own, just before the verdict.
            let verdict = p.inbound.len() - 1;
            p.inbound.insert(
                verdict,
                Step::Check(ConfiguredStage {
                    stage: Box::new(Failing),
                    fail_mode,
                }),
            );
        }
        p
    }

    #[tokio::test]
    async fn failing_stage_tempfails_by_default_and_passes_only_when_open() {
        let c = Config::default();
        let raw = b"From: a@b.test\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\nhi\r\n";
        let out = pipeline(&c, Some(FailMode::Tempfail))
            .run(&envelope(), raw)
            .await;
        assert_eq!(out.action, Action::Tempfail);
        assert!(out.reason.contains("failing"));
        let out = pipeline(&c, Some(FailMode::Open))
            .run(&envelope(), raw)
            .await;
        assert_eq!(out.action, Action::Accept);
        assert!(
            out.card
                .symbols
                .iter()
                .any(|s| s.name == "STAGE_FAILED_OPEN")
        );
    }

    #[tokio::test]
    async fn header_sanity_symbols_reach_the_verdict_with_overrides() {
        let c = Config::parse("[symbols]\nHDR_MISSING_DATE = 20.0").unwrap();
        let out = pipeline(&c, None)
            .run(
                &envelope(),
                b"From: a@b.test\r\nMessage-ID: <1@b>\r\n\r\nhi\r\n",
            )
            .await;
        let hdr = |out: &Outcome| {
            out.card
                .symbols
                .iter()
                .filter(|s| s.name.starts_with("HDR_"))
                .count()
        };
        assert_eq!(hdr(&out), 1);
        assert_eq!(out.card.score(), 20.0);
        assert_eq!(out.action, Action::Reject);
        let c = Config::parse("[stages.header_sanity]\nenabled = false").unwrap();
        let out = pipeline(&c, None).run(&envelope(), b"x").await;
        assert_eq!(hdr(&out), 0);
    }
    #[tokio::test]
    async fn bayes_points_scale_with_probability_and_overrides_scale_too() {
        use filters::bayes::{Class, tokenizer};
        let spam = b"From: d@cheap.example\r\nDate: x\r\nMessage-ID: <1@b>\r\nSubject: cheap pills\r\n\r\nbuy cheap pills now\r\n";
        let ham = b"From: a@work.example\r\nDate: x\r\nMessage-ID: <2@b>\r\nSubject: meeting\r\n\r\nagenda of the meeting\r\n";
        let model = crate::bayes::empty();
        model
            .write()
            .unwrap()
            .learn(&tokenizer::tokenize(spam, None), Class::Spam);
        model
            .write()
            .unwrap()
            .learn(&tokenizer::tokenize(ham, None), Class::Ham);
        let resources = Resources {
            bayes: Some(model),
            ..Resources::default()
        };
        let run = |extra: &str| {
            let c = Config::parse(&format!("[bayes]\nmin_ham = 1\nmin_spam = 1\n{extra}")).unwrap();
            Pipeline::from_config(&c, &resources, Metrics::new())
        };
        let out = run("").run(&envelope(), spam).await;
        let sym = out
            .card
            .symbols
            .iter()
            .find(|s| s.name == "BAYES_SPAM")
            .unwrap();
        assert!(sym.scale >= 0.5 && sym.scale <= 1.0, "{sym:?}");
        assert!((sym.points - 10.0 * sym.scale).abs() < 1e-9, "{sym:?}");
        let out = run("[symbols]\nBAYES_SPAM = 20.0\n")
            .run(&envelope(), spam)
            .await;
        let over = out
            .card
            .symbols
            .iter()
            .find(|s| s.name == "BAYES_SPAM")
            .unwrap();
        assert!((over.points - 20.0 * sym.scale).abs() < 1e-9, "{over:?}");
        // (a two-message model is not very sure of anything: widen the ham band)
        let out = run("ham_threshold = 0.4\n").run(&envelope(), ham).await;
        assert!(
            out.card.symbols.iter().any(|s| s.name == "BAYES_HAM"),
            "{out:?}"
        );
        for off in ["[stages.bayes]\nenabled = false\n", "enabled = false\n"] {
            let out = run(off).run(&envelope(), spam).await;
            assert!(!out.card.summary().contains("BAYES_"), "{off}: {out:?}");
        }
    }
    #[tokio::test]
    async fn an_allow_entry_skips_bayes_and_a_block_entry_rejects() {
        use filters::bayes::{Class, tokenizer};
        use filters::lists::{Entry, ListKind, ListSet, LiveLists, Scope, Sender};
        let spam = b"From: d@cheap.example\r\nDate: x\r\nMessage-ID: <1@b>\r\nSubject: cheap pills\r\n\r\nbuy cheap pills now\r\n";
        let ham = b"From: a@work.example\r\nDate: x\r\nMessage-ID: <2@b>\r\nSubject: meeting\r\n\r\nagenda of the meeting\r\n";
        let model = crate::bayes::empty();
        for (m, class) in [(&spam[..], Class::Spam), (&ham[..], Class::Ham)] {
            model
                .write()
                .unwrap()
                .learn(&tokenizer::tokenize(m, None), class);
        }
        let entry = |kind, sender: &str| Entry {
            id: 1,
            kind,
            sender: Sender::parse(sender).unwrap(),
            scope: Scope::Global,
            expires_at: None,
        };
        let lists = LiveLists::new(ListSet::new([entry(ListKind::Allow, "192.0.2.0/24")]));
        let resources = Resources {
            bayes: Some(model),
            lists: Some(lists.clone()),
            ..Resources::default()
        };
        let c = Config::parse("[bayes]\nmin_ham = 1\nmin_spam = 1\n").unwrap();
        let p = Pipeline::from_config(&c, &resources, Metrics::new());
        let out = p.run(&envelope(), spam).await;
        let summary = out.card.summary();
        assert!(
            summary.contains("LIST_ALLOW") && !summary.contains("BAYES_"),
            "{summary}"
        );
        assert!(out.card.score() <= -20.0, "{summary}");
        // The lists are replaced in place: the next message sees the block entry (and
        // Bayes, which has an opinion on this message, speaks again).
        lists.replace(ListSet::new([entry(ListKind::Block, "@b.test")]));
        let out = p.run(&envelope(), spam).await;
        assert_eq!(out.action, Action::Reject, "{}", out.card.summary());
        assert!(
            out.card.summary().contains("BAYES_SPAM"),
            "{}",
            out.card.summary()
        );
    }
}
