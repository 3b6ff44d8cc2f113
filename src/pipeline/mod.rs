//! The pipeline: the ordered stages a message passes through after DATA, and the verdict.
//!
//! The order is written once per direction, in [`inbound`] and [`outbound`]. Stages report
//! symbols; [`verdict`] alone turns the score card into an action. A stage that fails is
//! handled by its configured fail mode here, in one place.

#[cfg(test)]
mod actions_tests;
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
use crate::rules::pattern::Address;
use crate::rules::{
    EnvelopeFacts, Evaluation, MessageAction, MessageFacts, RuleMatch, RuleSet, SmimeOverride,
};
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
    /// The symbols one step reported.
    pub fn symbols_of(&self, run: &StageRun) -> &[Symbol] {
        self.card
            .symbols
            .get(run.symbols.clone())
            .unwrap_or_default()
    }

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
            journal: &self.journal,
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
    /// Each step as it ran, in order, with the symbols it reported (for `portcullis
    /// explain`). A step the message never reached (after a tempfail) is not in it.
    pub trace: Vec<StageRun>,
    /// The rules that matched, with the conditions that held and their actions (the log
    /// line, `portcullis explain`). Empty without rules.
    pub rules: Vec<RuleMatch>,
    /// Journal files of `archive = { dir }` actions, written by `queue::admit` with the
    /// message's queue id before the commit.
    pub journal: Vec<crate::actions::archive::JournalFile>,
    /// A refusal by a rule's `reject = "text"`: the text of the `550 5.7.1`.
    pub refusal_text: Option<String>,
}

/// One step of the pipeline as it ran for one message.
#[derive(Debug, Clone)]
pub struct StageRun {
    /// The step's name: a stage's (`header_sanity`, `auth`, ...) or `smime unwrap`,
    /// `smime protect`, `dkim sign`, `smime harvest`.
    pub step: &'static str,
    /// The symbols it put on the score card: `card.symbols[symbols]`, with their points as
    /// weighed (`[symbols]` overrides applied).
    pub symbols: std::ops::Range<usize>,
    pub elapsed: Duration,
    /// It could not do its job: why (its fail mode decided what followed).
    pub error: Option<String>,
    /// It did not run for this message: why.
    pub skipped: Option<&'static str>,
}

impl StageRun {
    fn ran(step: &'static str, symbols: std::ops::Range<usize>, started: Instant) -> StageRun {
        StageRun {
            step,
            symbols,
            elapsed: started.elapsed(),
            error: None,
            skipped: None,
        }
    }
}

/// Whether a run may leave anything behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A message being received: every step does its job.
    Live,
    /// `portcullis explain`: the same steps and verdict, but nothing is kept (no
    /// certificate harvested). Learning and storing are the session's, not the run's.
    DryRun,
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
    /// Offline evaluation only (`portcullis eval --auth-results ID`): the auth stage reads
    /// the results this authserv-id recorded in each message instead of checking live.
    pub recorded_auth: Option<String>,
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

    /// The message actions of the rules, with the certificate store for `sign_attachments`.
    pub fn message_actions(&self, config: &Config) -> Arc<crate::actions::MessageActions> {
        Arc::new(crate::actions::MessageActions::new(
            self.keyring.clone(),
            crate::actions::MimeLimits::from_config(&config.limits),
        ))
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
    /// The ordered rules (also in the orders' rules step), for RCPT TO and the skips.
    rules: Arc<RuleSet>,
    /// The allow and block lists when the inbound order checks them, for RCPT TO.
    lists: Option<filters::lists::LiveLists>,
}

impl Pipeline {
    pub fn from_config(config: &Config, resources: &Resources, metrics: Metrics) -> Pipeline {
        // Validated with the config: compiling again cannot fail.
        let rules = Arc::new(
            RuleSet::compile(&config.rules)
                .unwrap_or_else(|e| panic!("rules were validated with the config: {e}")),
        );
        let inbound = inbound::steps(config, resources, &rules);
        let outbound = outbound::steps(config, resources, &rules);
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
            rules,
            lists: resources
                .lists
                .clone()
                .filter(|_| config.stage("lists").enabled),
        }
    }

    /// The block entry that refuses this inbound recipient at RCPT TO on the envelope alone
    /// (envelope sender or client network), described for the log; `None` without lists.
    pub fn list_block_at_rcpt(
        &self,
        mail_from: &str,
        client_ip: std::net::IpAddr,
        rcpt: &str,
    ) -> Option<String> {
        let lists = self.lists.as_ref()?.current();
        lists
            .block_at_rcpt(mail_from, client_ip, rcpt, filters::unix_now())
            .map(|e| e.describe())
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

    /// The rules, for the session's RCPT TO decision and `portcullis explain`.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The stages the rules skip for this message: those every recipient's rules skip
    /// (decided from the envelope, as at RCPT TO).
    fn skipped(&self, envelope: &Envelope) -> Vec<&'static str> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let env = EnvelopeFacts::of(envelope);
        let mut skipped: Option<Vec<&'static str>> = None;
        for rcpt in &envelope.rcpt_to {
            let skip = self.rules.evaluate(&env, &Address::new(rcpt), None).skip;
            skipped = Some(match skipped {
                None => skip,
                Some(before) => before.into_iter().filter(|s| skip.contains(s)).collect(),
            });
        }
        skipped.unwrap_or_default()
    }

    /// Run the steps of the message's direction, in their order, and decide. The order
    /// (`inbound.rs`, `outbound.rs`) has three phases, checked when the pipeline is built:
    /// steps that change what is judged, the checks, the rules and the verdict, steps on
    /// what will be stored.
    pub async fn run(&self, envelope: &Envelope, raw: &[u8]) -> Outcome {
        self.run_with(envelope, raw, RunMode::Live).await
    }

    /// [`Pipeline::run`] in a [`RunMode`]: the one function behind the live verdict and
    /// `portcullis explain`.
    pub async fn run_with(&self, envelope: &Envelope, raw: &[u8], mode: RunMode) -> Outcome {
        let mut trace = Vec::new();
        let mut out = self.decide(envelope, raw, mode, &mut trace).await;
        out.trace = trace;
        out
    }

    async fn decide(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        mode: RunMode,
        trace: &mut Vec<StageRun>,
    ) -> Outcome {
        let steps = match envelope.direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        let mut card = ScoreCard::default();
        let mut headers = Vec::new();
        let mut unwrapped = InboundResult::default();
        let phase_of = |p: Phase| steps.iter().filter(move |s| s.phase() == p);
        let skipped = self.skipped(envelope);

        // 1. What the checks judge: inbound, the S/MIME plaintext.
        for step in phase_of(Phase::Prepare) {
            let (started, first) = (Instant::now(), card.symbols.len());
            let result = self
                .prepare(step, envelope, raw, &mut unwrapped, &mut card, &mut headers)
                .await;
            let mut run = StageRun::ran(step.name(), first..card.symbols.len(), started);
            if let Err(out) = result {
                run.error = Some(out.reason.clone());
                trace.push(run);
                return out;
            }
            trace.push(run);
        }

        // 2. The checks, in order, then the rules and the verdict.
        let judged = unwrapped.replacement.as_deref().unwrap_or(raw);
        let parsed = mail_parser::MessageParser::default().parse(judged);
        // What the stages establish for each other; a valid, trusted S/MIME signature of the
        // From address authenticates its domain like an aligned DKIM signature.
        let mut facts = Facts {
            authenticated_domain: smime_authenticated_domain(&unwrapped, parsed.as_ref()),
            ..Facts::default()
        };
        let mut evaluations: Option<Vec<Evaluation>> = None;
        let mut decided = None;
        for step in phase_of(Phase::Judge) {
            match step {
                Step::Check(s) if skipped.contains(&s.stage.name()) => {
                    let mut run = StageRun::ran(s.stage.name(), 0..0, Instant::now());
                    run.skipped = Some("skipped by a rule");
                    trace.push(run);
                }
                // An operator's allow entry overrides the spam filters' opinion.
                Step::Check(s) if facts.allow_listed && s.stage.is_spam_filter() => {
                    let mut run = StageRun::ran(s.stage.name(), 0..0, Instant::now());
                    run.skipped = Some("skipped for an allow-listed sender");
                    trace.push(run);
                }
                Step::Check(s) => {
                    let (started, first) = (Instant::now(), card.symbols.len());
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
                            trace.push(StageRun::ran(
                                s.stage.name(),
                                first..card.symbols.len(),
                                started,
                            ));
                        }
                        Err(e) => {
                            let error = e.to_string();
                            let stop = self.stage_failed(
                                s.stage.name(),
                                s.fail_mode,
                                &error,
                                &mut card,
                                &headers,
                            );
                            let mut run =
                                StageRun::ran(s.stage.name(), first..card.symbols.len(), started);
                            run.error = Some(error);
                            trace.push(run);
                            if let Some(out) = stop {
                                return out;
                            }
                        }
                    }
                }
                Step::Rules(rules) => {
                    let started = Instant::now();
                    let env = EnvelopeFacts::of(envelope);
                    let message =
                        MessageFacts::new(rules, parsed.as_ref(), &facts, &card, raw.len());
                    evaluations = Some(
                        envelope
                            .rcpt_to
                            .iter()
                            .map(|r| rules.evaluate(&env, &Address::new(r), Some(&message)))
                            .collect(),
                    );
                    trace.push(StageRun::ran(step.name(), 0..0, started));
                }
                Step::Verdict => {
                    decided = Some(decide_recipients(
                        envelope,
                        &card,
                        &self.thresholds,
                        evaluations.as_deref(),
                    ))
                }
                _ => unreachable!("check_order keeps other steps out of the judge phase"),
            }
        }
        let decision = decided.expect("check_order requires a verdict step");
        let message_id = parsed
            .as_ref()
            .and_then(|m| m.message_id())
            .unwrap_or_default()
            .to_string();
        drop(parsed);
        let rules = matched_rules(evaluations.as_deref().unwrap_or_default());
        let action = decision.action;
        let reason = decision.reason.clone();
        if !matches!(action, Action::Accept | Action::Tag | Action::Quarantine) {
            // Nothing is stored: refused (or tempfailed) for every recipient.
            return Outcome {
                action,
                card,
                reason,
                headers,
                copies: vec![MessageCopy::default()],
                facts,
                trace: Vec::new(),
                rules,
                refusal_text: decision.refusal_text,
                journal: Vec::new(),
            };
        }

        // 3. What will be stored: the copies of each group of recipients with the same
        //    outcome, then the steps that act on them.
        let harvestable = std::mem::take(&mut unwrapped.harvestable);
        let base = first_copies(envelope, unwrapped);
        let split = decision.groups.len() > 1;
        let mut copies = Vec::new();
        let mut archive_copies = Vec::new();
        let mut journal = Vec::new();
        let mut archived = Vec::new();
        let mut base = Some(base);
        for group in &decision.groups {
            // One group (the usual case): its copies are the base ones, as they are.
            let mut group_copies = match &base {
                Some(b) if split => restrict(b, group),
                _ => base.take().unwrap_or_default(),
            };
            let sub;
            let group_envelope = if split {
                sub = Envelope {
                    rcpt_to: group.recipients.clone(),
                    ..envelope.clone()
                };
                &sub
            } else {
                envelope
            };
            for step in phase_of(Phase::Store) {
                match step {
                    Step::Act(acts) if !group.message_actions.is_empty() => {
                        // A held copy is not delivered: it gets no journal copy.
                        let actions: Vec<MessageAction> = group
                            .message_actions
                            .iter()
                            .filter(|a| {
                                group.hold.is_none() || !matches!(a, MessageAction::Archive { .. })
                            })
                            .cloned()
                            .collect();
                        let started = Instant::now();
                        let result = acts
                            .apply(&actions, &mut group_copies, raw, &mut archived)
                            .await;
                        self.metrics
                            .stage_time("actions", started.elapsed().as_secs_f64());
                        match result {
                            Ok(applied) => {
                                for sym in applied.symbols {
                                    card.add(self.weigh(sym));
                                }
                                archive_copies.extend(applied.archive_copies);
                                journal.extend(applied.journal);
                            }
                            Err(e) => {
                                // The certificate store could not be read: 451, as S/MIME
                                // protection does; the client tries again.
                                if let Some(mut out) = self.stage_failed(
                                    "actions",
                                    FailMode::Tempfail,
                                    &format!("{e:#}"),
                                    &mut card,
                                    &headers,
                                ) {
                                    out.rules = rules;
                                    return out;
                                }
                            }
                        }
                    }
                    Step::Protect(smime) => {
                        let (started, first) = (Instant::now(), card.symbols.len());
                        // What the message actions made of it, else the message as received.
                        let current = match group_copies.as_slice() {
                            [only] => only.body.as_deref().unwrap_or(raw),
                            _ => raw,
                        };
                        let result = smime.protect(group_envelope, current, group.smime).await;
                        self.metrics
                            .stage_time("smime", started.elapsed().as_secs_f64());
                        let mut run = StageRun::ran(step.name(), first..first, started);
                        match result {
                            Ok(Some(mut protected)) => {
                                // A copy left clear is the message as the actions left it,
                                // not as received.
                                let changed = match group_copies.as_slice() {
                                    [only] => only.body.clone(),
                                    _ => None,
                                };
                                for copy in &mut protected.copies {
                                    if copy.body.is_none() {
                                        copy.body.clone_from(&changed);
                                    }
                                }
                                group_copies = protected.copies;
                                for sym in protected.symbols {
                                    card.add(self.weigh(sym));
                                }
                                run.symbols = first..card.symbols.len();
                                trace.push(run);
                            }
                            Ok(None) => trace.push(run),
                            Err(e) => {
                                // Always 451 here, whatever the fail mode: passing would
                                // send in clear what policy wants signed or encrypted.
                                let error = format!("{e:#}");
                                let stop = self.stage_failed(
                                    "smime",
                                    FailMode::Tempfail,
                                    &error,
                                    &mut card,
                                    &headers,
                                );
                                run.error = Some(error);
                                trace.push(run);
                                if let Some(mut out) = stop {
                                    out.rules = rules;
                                    return out;
                                }
                            }
                        }
                    }
                    // Each copy signed as it will leave.
                    Step::DkimSign(signer) => {
                        let started = Instant::now();
                        for copy in &mut group_copies {
                            copy.headers
                                .extend(signer.sign(copy.body.as_deref().unwrap_or(raw)));
                        }
                        self.metrics
                            .stage_time("dkim_sign", started.elapsed().as_secs_f64());
                        trace.push(StageRun::ran(step.name(), 0..0, started));
                    }
                    _ => {}
                }
            }
            for copy in &mut group_copies {
                if !group.headers.is_empty() {
                    let own = std::mem::take(&mut copy.headers);
                    copy.headers = group.headers.iter().cloned().chain(own).collect();
                }
                copy.hold.clone_from(&group.hold);
                copy.message_actions.clone_from(&group.message_actions);
                if split {
                    copy.action = Some(group.action);
                    copy.score = Some(group.score);
                }
            }
            copies.extend(group_copies);
        }
        // The journal copies after the message's own: its first copy's queue id is the
        // message's.
        copies.extend(archive_copies);
        // Partners' certificates are learnt only from mail we let through.
        for step in phase_of(Phase::Store) {
            if let Step::Harvest(smime) = step
                && matches!(action, Action::Accept | Action::Tag)
                && !harvestable.is_empty()
            {
                let started = Instant::now();
                let mut run = StageRun::ran(step.name(), 0..0, started);
                match mode {
                    RunMode::Live => smime.harvest(&harvestable, &message_id).await,
                    RunMode::DryRun => run.skipped = Some("dry run: no certificate is kept"),
                }
                run.elapsed = started.elapsed();
                trace.push(run);
            }
        }
        Outcome {
            action,
            card,
            reason,
            headers,
            facts,
            copies,
            trace: Vec::new(),
            rules,
            refusal_text: None,
            journal,
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
                trace: Vec::new(),
                rules: Vec::new(),
                refusal_text: None,
                journal: Vec::new(),
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

/// Recipients of one message with the same outcome: they share one stored copy.
#[derive(Debug, Clone)]
struct Group {
    recipients: Vec<String>,
    action: Action,
    score: f64,
    /// `Some(reason)`: the copy is held.
    hold: Option<String>,
    headers: Vec<String>,
    message_actions: Vec<MessageAction>,
    smime: Option<SmimeOverride>,
}

/// The verdict of a whole message.
struct Decision {
    /// The message's action: the hardest of the stored groups' (accept, tag,
    /// quarantine), or, when nothing is stored, reject or tempfail.
    action: Action,
    reason: String,
    /// The stored groups, in recipient order (a refused recipient's group is held).
    groups: Vec<Group>,
    /// The deciding rule's `reject` text, when everyone is refused.
    refusal_text: Option<String>,
}

/// Each recipient's verdict (its rules' decision, else the thresholds), grouped by
/// outcome. When some recipients are refused and others not, the refused ones' copy is
/// held with the reason: never dropped, never bounced. When all are refused the message
/// is refused (tempfail when any recipient's verdict is tempfail).
fn decide_recipients(
    envelope: &Envelope,
    card: &ScoreCard,
    thresholds: &VerdictConfig,
    evaluations: Option<&[Evaluation]>,
) -> Decision {
    let Some(evaluations) = evaluations else {
        // No rules: one verdict for all, as the thresholds decide.
        let v = verdict::decide_for(card, thresholds, None);
        return Decision {
            action: v.action,
            groups: vec![Group {
                recipients: envelope.rcpt_to.clone(),
                action: v.action,
                score: v.score,
                hold: (v.action == Action::Quarantine).then(|| v.reason.clone()),
                headers: Vec::new(),
                message_actions: Vec::new(),
                smime: None,
            }],
            reason: v.reason,
            refusal_text: None,
        };
    };
    let verdicts: Vec<_> = evaluations
        .iter()
        .map(|e| verdict::decide_for(card, thresholds, Some(e)))
        .collect();
    let refused = |a: Action| matches!(a, Action::Reject | Action::Tempfail);
    let all_refused = verdicts.iter().all(|v| refused(v.action));
    let mut reasons: Vec<String> = Vec::new();
    for (rcpt, v) in envelope.rcpt_to.iter().zip(&verdicts) {
        let r = format!("{}: {}", v.action.as_str(), v.reason);
        if envelope.rcpt_to.len() == 1 || verdicts.iter().all(|o| o == v) {
            reasons = vec![v.reason.clone()];
            break;
        }
        reasons.push(format!("{rcpt} {r}"));
    }
    let reason = reasons.join("; ");
    if all_refused {
        let action = if verdicts.iter().any(|v| v.action == Action::Tempfail) {
            Action::Tempfail
        } else {
            Action::Reject
        };
        return Decision {
            action,
            reason,
            groups: Vec::new(),
            refusal_text: verdicts.iter().find_map(|v| v.text.clone()),
        };
    }
    let mut groups: Vec<Group> = Vec::new();
    for ((rcpt, v), e) in envelope.rcpt_to.iter().zip(&verdicts).zip(evaluations) {
        let (action, hold) = if refused(v.action) {
            let by = match &v.rule {
                Some(rule) => format!("by rule {rule}"),
                None => format!("({})", v.reason),
            };
            let what = if v.action == Action::Tempfail {
                "tempfailed"
            } else {
                "refused"
            };
            (
                Action::Quarantine,
                Some(format!("{what} for this recipient {by}")),
            )
        } else if v.action == Action::Quarantine {
            (Action::Quarantine, Some(v.reason.clone()))
        } else {
            (v.action, None)
        };
        let group = Group {
            recipients: vec![rcpt.clone()],
            action,
            score: v.score,
            hold,
            headers: e.headers.clone(),
            message_actions: e.message_actions.clone(),
            smime: e.smime,
        };
        match groups.iter_mut().find(|g| {
            g.action == group.action
                && g.score == group.score
                && g.hold == group.hold
                && g.headers == group.headers
                && g.message_actions == group.message_actions
                && g.smime == group.smime
        }) {
            Some(g) => g.recipients.push(rcpt.clone()),
            None => groups.push(group),
        }
    }
    let action = verdicts
        .iter()
        .map(|v| v.action)
        .filter(|a| !refused(*a))
        .max()
        .unwrap_or(Action::Accept);
    Decision {
        action,
        reason,
        groups,
        refusal_text: None,
    }
}

/// The base copies for one group of several: each narrowed to the group's recipients (a
/// copy for none of them is left out).
fn restrict(base: &[MessageCopy], group: &Group) -> Vec<MessageCopy> {
    base.iter()
        .filter_map(|c| {
            let recipients: Vec<String> = match &c.recipients {
                None => group.recipients.clone(),
                Some(r) => r
                    .iter()
                    .filter(|a| group.recipients.contains(a))
                    .cloned()
                    .collect(),
            };
            (!recipients.is_empty()).then(|| MessageCopy {
                recipients: Some(recipients),
                ..c.clone()
            })
        })
        .collect()
}

/// The rules that matched, merged over recipients (one entry per rule and reason).
fn matched_rules(evaluations: &[Evaluation]) -> Vec<RuleMatch> {
    let mut out: Vec<RuleMatch> = Vec::new();
    for m in evaluations.iter().flat_map(|e| &e.matches) {
        match out
            .iter_mut()
            .find(|o| o.rule == m.rule && o.condition == m.condition)
        {
            Some(o) => o.recipients.extend(m.recipients.iter().cloned()),
            None => out.push(m.clone()),
        }
    }
    out
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
                    ..MessageCopy::default()
                },
                MessageCopy {
                    recipients: Some(others),
                    body: None,
                    headers: unwrapped.others_header.into_iter().collect(),
                    ..MessageCopy::default()
                },
            ]
        }
        (_, replacement) => vec![MessageCopy {
            recipients: None,
            body: replacement,
            ..MessageCopy::default()
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
            // A check of its own, just before the rules and the verdict.
            let verdict = p
                .inbound
                .iter()
                .position(|s| matches!(s, Step::Rules(_) | Step::Verdict))
                .unwrap();
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
    async fn the_trace_names_each_step_with_its_symbols_and_failures() {
        let c = Config::parse("[symbols]\nHDR_MISSING_DATE = 2.5").unwrap();
        let raw = b"From: a@b.test\r\nMessage-ID: <1@b>\r\n\r\nhi\r\n";
        let out = pipeline(&c, None).run(&envelope(), raw).await;
        let steps: Vec<&str> = out.trace.iter().map(|r| r.step).collect();
        assert_eq!(steps, ["tls_reputation", "header_sanity", "content"]);
        let hdr: Vec<(&str, f64)> = out
            .symbols_of(&out.trace[1])
            .iter()
            .map(|s| (s.name, s.points))
            .collect();
        assert_eq!(hdr, [("HDR_MISSING_DATE", 2.5)]);
        // A failing stage is in the trace with its error; open: its symbol is its own.
        let out = pipeline(&c, Some(FailMode::Open))
            .run_with(&envelope(), raw, RunMode::DryRun)
            .await;
        let failed = out.trace.last().unwrap();
        assert_eq!(failed.step, "failing");
        assert_eq!(failed.error.as_deref(), Some("service down"));
        assert_eq!(out.symbols_of(failed)[0].name, "STAGE_FAILED_OPEN");
        let out = pipeline(&c, Some(FailMode::Tempfail))
            .run(&envelope(), raw)
            .await;
        assert_eq!(out.action, Action::Tempfail);
        assert_eq!(out.trace.last().unwrap().step, "failing");
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

    fn two_recipients() -> Envelope {
        Envelope {
            rcpt_to: vec!["a@example.test".into(), "b@example.test".into()],
            ..envelope()
        }
    }

    const WELL_FORMED: &[u8] = b"From: x@b.test\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\nhi\r\n";

    #[tokio::test]
    async fn recipients_split_by_rule_and_the_refused_copy_is_held() {
        let c = Config::parse(
            r#"
[[rules]]
name = "mark-a"
when = { recipient = "a@example.test" }
actions = { add_header = "X-Rule: a" }
continue = true
[[rules]]
name = "refuse-b"
when = { recipient = "b@example.test", score = { max = 100.0 } }
actions = { reject = "not for b" }
"#,
        )
        .unwrap();
        let out = pipeline(&c, None).run(&two_recipients(), WELL_FORMED).await;
        assert_eq!(out.action, Action::Accept, "{out:?}");
        assert_eq!(out.copies.len(), 2, "{out:?}");
        let a = &out.copies[0];
        assert_eq!(
            a.recipients.as_deref(),
            Some(&["a@example.test".to_string()][..])
        );
        assert_eq!(a.hold, None);
        assert_eq!(a.headers, ["X-Rule: a"]);
        assert_eq!(a.action, Some(Action::Accept));
        let b = &out.copies[1];
        assert_eq!(
            b.recipients.as_deref(),
            Some(&["b@example.test".to_string()][..])
        );
        assert_eq!(
            b.hold.as_deref(),
            Some("refused for this recipient by rule refuse-b")
        );
        assert!(b.headers.is_empty());
        let names: Vec<&str> = out.rules.iter().map(|m| m.rule.as_str()).collect();
        assert_eq!(names, ["mark-a", "refuse-b"]);

        // Everyone refused: the message is refused, with the rule's text.
        let one = Envelope {
            rcpt_to: vec!["b@example.test".into()],
            ..envelope()
        };
        let out = pipeline(&c, None).run(&one, WELL_FORMED).await;
        assert_eq!(out.action, Action::Reject);
        assert_eq!(out.refusal_text.as_deref(), Some("not for b"));
        assert_eq!(out.reason, "rule refuse-b");
    }

    #[tokio::test]
    async fn tempfail_for_all_is_a_tempfail_and_same_outcomes_share_one_copy() {
        let c = Config::parse(
            r#"
[[rules]]
name = "later"
when = { sender = "@b.test", size = { min = 1 } }
actions = { tempfail = true }
"#,
        )
        .unwrap();
        let out = pipeline(&c, None).run(&two_recipients(), WELL_FORMED).await;
        assert_eq!(out.action, Action::Tempfail);
        let c = Config::parse(
            "[[rules]]\nname = \"tag-all\"\nwhen = { size = { min = 1 } }\nactions = { tag = true, add_header = \"X-T: 1\" }",
        )
        .unwrap();
        let out = pipeline(&c, None).run(&two_recipients(), WELL_FORMED).await;
        assert_eq!(out.action, Action::Tag);
        assert_eq!(out.copies.len(), 1, "{out:?}");
        // One group: the copy is for every recipient, as without rules.
        assert_eq!(out.copies[0].recipients, None);
        assert_eq!(out.copies[0].headers, ["X-T: 1"]);
        assert_eq!(out.copies[0].action, None);
    }

    #[tokio::test]
    async fn skip_keeps_a_stage_from_running_and_quarantine_holds() {
        let c = Config::parse(
            r#"
[[rules]]
name = "partner"
when = { sender = "@b.test" }
actions = { skip = "header_sanity" }
continue = true
[[rules]]
name = "hold-partner"
when = { sender = "@b.test", symbols = "HDR_MISSING_DATE" }
actions = { quarantine = true }
"#,
        )
        .unwrap();
        let bare = b"Subject: no From, Date, Message-ID\r\n\r\nhi\r\n";
        let out = pipeline(&c, None).run(&envelope(), bare).await;
        assert!(!out.card.summary().contains("HDR_"), "{out:?}");
        assert_eq!(out.action, Action::Accept);
        // Another sender: header sanity runs, and the missing headers are on the card.
        let other = Envelope {
            mail_from: "x@elsewhere.test".into(),
            ..envelope()
        };
        let out = pipeline(&c, None).run(&other, bare).await;
        assert!(out.card.summary().contains("HDR_MISSING_DATE"), "{out:?}");
        // A quarantine by rule holds the copy with the rule's name.
        let c = Config::parse(
            "[[rules]]\nname = \"hold\"\nwhen = { symbols = \"HDR_MISSING_DATE\" }\nactions = { quarantine = true }",
        )
        .unwrap();
        let out = pipeline(&c, None).run(&envelope(), bare).await;
        assert_eq!(out.action, Action::Quarantine);
        assert_eq!(out.copies[0].hold.as_deref(), Some("rule hold"));
    }

    #[tokio::test]
    async fn a_forced_action_comes_before_a_rule() {
        let c =
            Config::parse("[[rules]]\nname = \"accept-all\"\nactions = { accept = true }").unwrap();
        let mut p = pipeline(&c, None);
        struct Virus;
        impl Stage for Virus {
            fn name(&self) -> &'static str {
                "virus"
            }
            fn check<'a>(&'a self, _: &'a MessageContext<'a>) -> StageFuture<'a> {
                Box::pin(async {
                    Ok(vec![
                        Symbol::new("CLAM_VIRUS", "Eicar").forcing(Action::Reject),
                    ])
                })
            }
        }
        let at = p
            .inbound
            .iter()
            .position(|s| matches!(s, Step::Rules(_)))
            .unwrap();
        p.inbound.insert(
            at,
            Step::Check(ConfiguredStage {
                stage: Box::new(Virus),
                fail_mode: FailMode::Tempfail,
            }),
        );
        let out = p.run(&envelope(), WELL_FORMED).await;
        assert_eq!(out.action, Action::Reject);
        assert!(out.reason.contains("CLAM_VIRUS"), "{}", out.reason);
    }
}
