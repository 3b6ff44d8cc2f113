//! One SMTP session: a state machine over a plain or TLS stream.
//!
//! Input is read into one buffer; every complete command in it is answered before the
//! replies are flushed (PIPELINING, RFC 2920), and the buffer is only refilled when it
//! holds no complete command. DATA and BDAT bytes are taken from the same buffer, so a
//! pipelined DATA body is never mistaken for commands. The reply to the end of DATA is the
//! pipeline's verdict; 250 is only sent after the queue has the message on disk.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use filters::{Direction, Envelope, TlsFacts};
use smtp_proto::request::receiver::DummyDataReceiver;
use smtp_proto::{Error as ParseError, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::address::{Accepted, Route, classify_recipient, has_control, path_has_control};
use super::body::{Body, DataReceiver, Incoming, LineEndings};
use super::reply::{self, Reply, write_reply};
use super::stream::Stream;
use super::tls;
use super::verify::Verdict;
use crate::config::{BareLineEndings, Config, TlsMode};
use crate::live::{Live, Snapshot};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::queue::trace::printable;
use crate::queue::{Queue, new_queue_id};
use crate::rules::pattern::Address;
use crate::rules::{EnvelopeFacts, Evaluation};

/// What every session of the gateway shares.
pub struct Shared {
    /// The configuration in force, its pipeline and recipient verifier (replaced by a
    /// reload; each session keeps the snapshot it started with).
    pub live: Live,
    pub queue: Queue,
    pub metrics: Metrics,
    /// Bodies in transfer: the spool directory and the large-body permits.
    pub incoming: Incoming,
}

/// Per-listener settings.
pub struct ListenerSettings {
    pub tls_mode: TlsMode,
    pub acceptor: Option<openssl::ssl::SslAcceptor>,
}

/// How full a listener is: its free session slots out of all of them.
#[derive(Clone)]
pub struct Load {
    pub slots: Arc<tokio::sync::Semaphore>,
    pub capacity: usize,
}

impl Load {
    /// Whether at least `percent` % of the slots are taken.
    pub fn stressed(&self, percent: u8) -> bool {
        let taken = self.capacity.saturating_sub(self.slots.available_permits());
        taken * 100 >= self.capacity * usize::from(percent)
    }
}

/// The envelope being collected between MAIL and the end of DATA.
struct Transaction {
    mail_from: String,
    rcpts: Vec<String>,
    smtputf8: bool,
    body_8bit: bool,
    body: Body,
    /// The line-ending rule, over DATA or all BDAT chunks.
    lines: LineEndings,
    /// The body went past max_message_size: it is being discarded, the answer is 552.
    oversize: bool,
    bdat_used: bool,
}

enum Mode {
    Command,
    Data(DataReceiver),
    /// Reading a BDAT chunk into the body: bytes left, and whether it is the last chunk.
    Bdat(usize, bool),
    /// Reading a BDAT chunk we will refuse; `reply` is the answer once it is read.
    BdatDiscard(DummyDataReceiver, Reply),
}

enum Next {
    Continue,
    Close,
}

pub struct Session<S = tokio::net::TcpStream> {
    shared: Arc<Shared>,
    /// The configuration this session runs under, from its first to its last command: a
    /// reload applies to the sessions that start after it.
    snapshot: Arc<Snapshot>,
    listener: Arc<ListenerSettings>,
    stream: Option<Stream<S>>,
    peer: SocketAddr,
    internal: bool,
    inbuf: Vec<u8>,
    pos: usize,
    out: Vec<u8>,
    mode: Mode,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<TlsFacts>,
    tx: Option<Transaction>,
    bad_commands: u32,
    deadline: Instant,
    /// A too-long line was refused; its remaining bytes up to the newline are skipped.
    discarding_long_line: bool,
    /// Turns true when the gateway stops: the session says 421 at the next command wait.
    shutdown: watch::Receiver<bool>,
    /// When the wait for the current command line began (it must arrive whole in time).
    line_started: Option<Instant>,
    /// The listener's load, for stress mode; `None`: never under stress.
    load: Option<Load>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub fn new(
        shared: Arc<Shared>,
        listener: Arc<ListenerSettings>,
        stream: S,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let snapshot = shared.live.snapshot();
        let internal = snapshot.config.is_internal(peer.ip());
        let deadline = Instant::now() + snapshot.config.session_timeout();
        Self {
            shared,
            snapshot,
            listener,
            stream: Some(Stream::Plain(stream)),
            peer,
            internal,
            inbuf: Vec::with_capacity(16 * 1024),
            pos: 0,
            out: Vec::with_capacity(1024),
            mode: Mode::Command,
            helo: None,
            esmtp: false,
            tls: None,
            tx: None,
            bad_commands: 0,
            deadline,
            discarding_long_line: false,
            shutdown,
            line_started: None,
            load: None,
        }
    }

    /// Shrink the timeouts when the listener's slots run out (`[limits] stress_*`).
    pub fn with_load(mut self, load: Load) -> Self {
        self.load = Some(load);
        self
    }

    fn stressed(&self) -> bool {
        self.load
            .as_ref()
            .is_some_and(|l| l.stressed(self.config().limits.stress_threshold_percent))
    }

    fn config(&self) -> &Config {
        &self.snapshot.config
    }

    fn pipeline(&self) -> &Pipeline {
        &self.snapshot.pipeline
    }

    fn direction(&self) -> Direction {
        if self.internal {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    }

    /// Run the session to its end. Errors end the session; they are logged, not raised.
    pub async fn run(mut self) {
        let greeting = format!("220 {} ESMTP Portcullis\r\n", self.config().hostname);
        self.out.extend_from_slice(greeting.as_bytes());
        loop {
            let next = self.process_input().await;
            if self.flush().await.is_err() {
                return;
            }
            if let Next::Close = next {
                break;
            }
            match self.read_more().await {
                Ok(0) => {
                    if self.tx.is_some() {
                        tracing::info!(client = %self.peer, "client disconnected mid-transaction; nothing stored");
                    }
                    return;
                }
                Ok(_) => {}
                Err(ReadError::Timeout) => {
                    reply::TIMEOUT.write_to(&mut self.out);
                    let _ = self.flush().await;
                    tracing::info!(client = %self.peer, under_stress = self.stressed(), "session timed out");
                    break;
                }
                Err(ReadError::Io(e)) => {
                    tracing::debug!(client = %self.peer, error = %e, "read failed");
                    return;
                }
                Err(ReadError::Shutdown) => {
                    // Between commands: nothing half-received is lost; an open envelope
                    // was never acknowledged, so the client sends it again later.
                    reply::SHUTTING_DOWN.write_to(&mut self.out);
                    let _ = self.flush().await;
                    break;
                }
            }
        }
        if let Some(s) = self.stream.as_mut() {
            let _ = s.shutdown().await;
            // Closing with unread input makes the kernel reset the connection, which can
            // destroy our last reply (a 421) before the client reads it: read and drop what
            // the client still sends, briefly and boundedly, until it closes too.
            let mut scratch = [0u8; 4096];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                let mut total = 0;
                while total < 256 * 1024 {
                    match s.read(&mut scratch).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
        }
    }

    // === input and output ===

    async fn read_more(&mut self) -> Result<usize, ReadError> {
        if self.pos > 0 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        self.inbuf.reserve(32 * 1024);
        let now = Instant::now();
        if now >= self.deadline {
            return Err(ReadError::Timeout);
        }
        // A message being transferred is finished first; a wait for a command is not.
        let between_commands = matches!(self.mode, Mode::Command);
        let (idle, line_time) = self.config().command_waits(self.stressed());
        let mut wait = idle.min(self.deadline - now);
        if between_commands {
            // However slowly its bytes come, a command line has `line_time` in all.
            let started = *self.line_started.get_or_insert(now);
            let left = (started + line_time).saturating_duration_since(now);
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            wait = wait.min(left);
        }
        if between_commands && *self.shutdown.borrow() {
            return Err(ReadError::Shutdown);
        }
        let stream = self.stream.as_mut().ok_or(ReadError::Timeout)?;
        let shutdown = &mut self.shutdown;
        let stopping = async {
            if between_commands {
                let _ = shutdown.wait_for(|stop| *stop).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, stream.read_buf(&mut self.inbuf)) => r,
            _ = stopping => return Err(ReadError::Shutdown),
        };
        match read {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let wait = self.config().idle_timeout();
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no stream"))?;
        let r = tokio::time::timeout(wait, stream.write_all(&self.out)).await;
        self.out.clear();
        match r {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timeout",
            )),
        }
    }

    fn reply(&mut self, r: Reply) {
        r.write_to(&mut self.out);
    }

    /// A refused command: answer, count it, and close after too many.
    fn bad(&mut self, r: Reply) -> Next {
        self.reply(r);
        self.bad_counted()
    }

    /// Count a refusal already answered; close after too many.
    fn bad_counted(&mut self) -> Next {
        self.bad_commands += 1;
        if self.bad_commands >= self.config().limits.max_bad_commands {
            self.reply(reply::TOO_MANY_ERRORS);
            tracing::info!(client = %self.peer, "too many bad commands; closing");
            return Next::Close;
        }
        Next::Continue
    }

    /// Take the next complete command line out of the buffer.
    fn take_line(&mut self) -> Option<Result<Vec<u8>, ()>> {
        loop {
            let avail = &self.inbuf[self.pos..];
            match memchr_newline(avail) {
                Some(i) => {
                    let line = avail[..=i].to_vec();
                    self.pos += i + 1;
                    if self.discarding_long_line {
                        self.discarding_long_line = false;
                        continue;
                    }
                    if line.len() > self.config().limits.max_command_line {
                        return Some(Err(()));
                    }
                    return Some(Ok(line));
                }
                None => {
                    if avail.len() > self.config().limits.max_command_line {
                        self.pos = self.inbuf.len();
                        if self.discarding_long_line {
                            return None;
                        }
                        self.discarding_long_line = true;
                        return Some(Err(()));
                    }
                    return None;
                }
            }
        }
    }

    /// Handle everything complete in the input buffer.
    async fn process_input(&mut self) -> Next {
        loop {
            let mode = std::mem::replace(&mut self.mode, Mode::Command);
            match mode {
                Mode::Command => match self.take_line() {
                    None => return Next::Continue,
                    Some(Err(())) => {
                        self.line_started = None;
                        if let Next::Close = self.bad(reply::LINE_TOO_LONG) {
                            return Next::Close;
                        }
                    }
                    Some(Ok(line)) => {
                        self.line_started = None;
                        if let Next::Close = self.command(&line).await {
                            return Next::Close;
                        }
                    }
                },
                Mode::Data(mut rx) => {
                    let max = self.config().max_message_size;
                    let tx = self.tx.as_mut().expect("DATA mode has a transaction");
                    let (used, done) =
                        rx.ingest(&self.inbuf[self.pos..], &mut tx.lines, &mut tx.body);
                    self.pos += used;
                    tx.body.settle().await;
                    // Checked before `done`: a whole message may arrive in one read. The
                    // rest of an oversized body is read to its end but not kept.
                    if tx.body.len() > max && !tx.oversize {
                        tx.oversize = true;
                        tx.body.discard();
                    }
                    if done {
                        self.finish_message().await;
                    } else {
                        self.mode = Mode::Data(rx);
                        return Next::Continue;
                    }
                }
                Mode::Bdat(left, is_last) => {
                    let tx = self.tx.as_mut().expect("BDAT mode has a transaction");
                    let avail = &self.inbuf[self.pos..];
                    let take = avail.len().min(left);
                    tx.lines.push(&avail[..take], &mut tx.body);
                    self.pos += take;
                    tx.body.settle().await;
                    // Bare line endings made CRLF can grow a body past what BDAT announced.
                    if tx.body.len() > self.snapshot.config.max_message_size && !tx.oversize {
                        tx.oversize = true;
                        tx.body.discard();
                    }
                    if take < left {
                        self.mode = Mode::Bdat(left - take, is_last);
                        return Next::Continue;
                    }
                    if is_last {
                        tx.lines.finish(&mut tx.body);
                        self.finish_message().await;
                    } else {
                        let n = tx.body.len();
                        write_reply(&mut self.out, 250, "2.0.0", &format!("{n} octets received"));
                    }
                }
                Mode::BdatDiscard(mut rx, answer) => {
                    let mut it = self.inbuf[self.pos..].iter();
                    let before = it.len();
                    let done = rx.ingest(&mut it);
                    self.pos += before - it.len();
                    if !done {
                        self.mode = Mode::BdatDiscard(rx, answer);
                        return Next::Continue;
                    }
                    if let Next::Close = self.bad(answer) {
                        return Next::Close;
                    }
                }
            }
        }
    }

    // === commands ===

    async fn command(&mut self, line: &[u8]) -> Next {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r.into_owned(),
            Err(e) => return self.bad(parse_error_reply(&e)),
        };
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Mail { from } => self.mail(from, line),
            Request::Rcpt { to } => self.rcpt(to, line).await,
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.tx = None;
                self.reply(reply::OK);
                Next::Continue
            }
            Request::Noop { .. } => {
                self.reply(reply::OK);
                Next::Continue
            }
            Request::Quit => {
                self.reply(reply::BYE);
                Next::Close
            }
            Request::Vrfy { .. } | Request::Expn { .. } => self.bad(reply::VRFY_DISABLED),
            Request::Help { .. } => {
                self.reply(reply::HELP);
                Next::Continue
            }
            Request::StartTls => self.starttls().await,
            Request::Lhlo { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.bad(reply::NOT_IMPLEMENTED),
        }
    }

    fn offers_starttls(&self) -> bool {
        self.tls.is_none()
            && self.listener.acceptor.is_some()
            && self.listener.tls_mode != TlsMode::None
    }

    fn ehlo(&mut self, host: String, esmtp: bool) -> Next {
        if host.trim().is_empty() {
            return self.bad(reply::BAD_HELO);
        }
        self.helo = Some(printable(&host));
        self.esmtp = esmtp;
        self.tx = None;
        let hostname = self.config().hostname.clone();
        if !esmtp {
            write_reply(&mut self.out, 250, "", &hostname);
            return Next::Continue;
        }
        let mut lines = vec![
            hostname,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config().max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.offers_starttls() {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out
                .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
        Next::Continue
    }

    /// `[[tls_policy]]` of the sender's domain: no STARTTLS, or no verified client
    /// certificate where one is required, and MAIL FROM is refused.
    fn tls_policy_refusal(&self, sender: &str) -> Option<Reply> {
        let domain = sender.rsplit_once('@').map(|(_, d)| d)?;
        let policy = self
            .config()
            .tls_policy_for(domain, filters::Direction::Inbound)?;
        let refusal = match &self.tls {
            None if policy.require_tls => Some(reply::MUST_STARTTLS),
            Some(t) if policy.require_verified_cert && !t.peer_cert_verified => {
                Some(reply::NEED_VERIFIED_CERT)
            }
            _ => None,
        };
        if refusal.is_some() {
            tracing::info!(client = %self.peer, sender = %printable(sender), "refused by the sender domain's TLS policy");
        }
        refusal
    }

    fn tls_required_but_absent(&self) -> bool {
        self.listener.tls_mode == TlsMode::Required && self.tls.is_none()
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>, line: &[u8]) -> Next {
        if self.helo.is_none() {
            return self.bad(reply::NEED_HELO);
        }
        if self.tls_required_but_absent() {
            return self.bad(reply::MUST_STARTTLS);
        }
        if self.tx.is_some() {
            return self.bad(reply::NESTED_MAIL);
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if smtputf8 && !self.esmtp {
            return self.bad(reply::UTF8_WITHOUT_EHLO);
        }
        if from.size > self.config().max_message_size {
            return self.bad(reply::TOO_BIG);
        }
        if !smtputf8 && !from.address.is_ascii() {
            return self.bad(reply::BAD_SENDER);
        }
        if has_control(&from.address) || path_has_control(line) {
            tracing::info!(client = %self.peer, sender = %printable(&from.address), "sender with a control character refused");
            return self.bad(reply::CONTROL_IN_SENDER);
        }
        if let Some(refusal) = self.tls_policy_refusal(&from.address) {
            return self.bad(refusal);
        }
        self.tx = Some(Transaction {
            mail_from: from.address,
            rcpts: Vec::new(),
            smtputf8,
            body_8bit: from.flags & MAIL_BODY_8BITMIME != 0,
            body: Body::new(&self.shared.incoming),
            lines: LineEndings::new(self.config().limits.bare_line_endings),
            oversize: false,
            bdat_used: false,
        });
        self.reply(reply::SENDER_OK);
        Next::Continue
    }

    async fn rcpt(&mut self, to: smtp_proto::RcptTo<String>, line: &[u8]) -> Next {
        if self.tls_required_but_absent() {
            return self.bad(reply::MUST_STARTTLS);
        }
        let Some(tx) = self.tx.as_ref() else {
            return self.bad(reply::NEED_MAIL);
        };
        if tx.rcpts.len() >= self.config().max_recipients {
            self.reply(reply::TOO_MANY_RECIPIENTS);
            return Next::Continue;
        }
        if !tx.smtputf8 && !to.address.is_ascii() {
            return self.bad(reply::BAD_RECIPIENT);
        }
        if has_control(&to.address) {
            tracing::info!(client = %self.peer, rcpt = %printable(&to.address), "recipient with a control character refused");
            return self.bad(reply::CONTROL_IN_RECIPIENT);
        }
        let line = String::from_utf8_lossy(line);
        let raw_path = line.split_once(':').map(|(_, p)| p).unwrap_or("");
        let raw_path = raw_path.split_once('>').map(|(p, _)| p).unwrap_or(raw_path);
        match classify_recipient(
            self.config(),
            self.internal,
            &to.address,
            &format!("{}>", raw_path.trim()),
        ) {
            Ok(_) if path_has_control(line.as_bytes()) => {
                tracing::info!(client = %self.peer, rcpt = %printable(&to.address), "recipient with a control character refused");
                self.bad(reply::CONTROL_IN_RECIPIENT)
            }
            Ok(accepted) => {
                if let Some(refusal) = self.verification_refusal(&accepted).await {
                    return self.bad(refusal);
                }
                let rules = self.rules_at_rcpt(&accepted.address);
                if let Some((r, text)) = rules
                    .as_ref()
                    .and_then(|e| self.rule_refusal(e, &accepted.address))
                {
                    write_reply(&mut self.out, r.code, r.enhanced, &text);
                    return self.bad_counted();
                }
                let lists_skipped = rules.as_ref().is_some_and(|e| e.skip.contains(&"lists"));
                if !lists_skipped && let Some(refusal) = self.list_refusal(&accepted.address) {
                    return self.bad(refusal);
                }
                let encrypt = rules.and_then(|e| e.smime).and_then(|s| s.encrypt);
                if let Some(refusal) = self.smime_refusal(&accepted.address, encrypt).await {
                    return self.bad(refusal);
                }
                let tx = self.tx.as_mut().expect("checked above");
                if !tx
                    .rcpts
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&accepted.address))
                {
                    tx.rcpts.push(accepted.address);
                }
                self.reply(reply::RCPT_OK);
                Next::Continue
            }
            Err(refusal) => {
                tracing::info!(client = %self.peer, rcpt = %printable(&to.address), ?refusal, "recipient refused");
                self.bad(reply::for_recipient_refusal(refusal))
            }
        }
    }

    /// `[recipients] verify`: a recipient of our domains that does not exist is refused
    /// here (550 5.1.1), so that no bounce is ever sent for it; when that cannot be told
    /// now, 450 4.1.1 (the client retries). postmaster is always accepted (RFC 5321 §4.5.1).
    async fn verification_refusal(&self, accepted: &Accepted) -> Option<Reply> {
        let verifier = &self.snapshot.recipients;
        if !verifier.is_on() || accepted.route != Route::Internal {
            return None;
        }
        let local = accepted.address.rsplit_once('@').map(|(l, _)| l)?;
        if local.eq_ignore_ascii_case("postmaster") {
            return None;
        }
        match verifier.check(&accepted.address).await {
            Verdict::Exists => None,
            Verdict::Unknown => {
                tracing::info!(client = %self.peer, rcpt = %printable(&accepted.address), "unknown recipient refused");
                Some(reply::UNKNOWN_RECIPIENT)
            }
            Verdict::TryLater(why) => {
                tracing::warn!(client = %self.peer, rcpt = %printable(&accepted.address), reason = %why, "recipient verification unavailable; 450");
                Some(reply::VERIFY_UNAVAILABLE)
            }
        }
    }

    /// Outbound `encrypt = "require"` and no certificate for this recipient: refused here,
    /// so that it is never sent in clear (550 5.7.1 naming the reason; 451 when the
    /// certificate store cannot be read).
    async fn smime_refusal(
        &self,
        rcpt: &str,
        encrypt_override: Option<crate::config::SmimeRule>,
    ) -> Option<Reply> {
        if !self.internal {
            return None;
        }
        let smime = self.pipeline().smime_outbound()?;
        let mail_from = self.tx.as_ref()?.mail_from.clone();
        match smime
            .recipient_refusal(&mail_from, rcpt, encrypt_override)
            .await
        {
            Ok(None) => None,
            Ok(Some(why)) => {
                tracing::info!(client = %self.peer, rcpt = %printable(rcpt), reason = %why, "recipient refused by S/MIME policy");
                Some(reply::SMIME_NO_CERTIFICATE)
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "certificate store unavailable at RCPT TO");
                Some(reply::TEMPFAIL)
            }
        }
    }

    /// An operator's block entry on the envelope sender or the client's network covers this
    /// inbound recipient: refused here (550 5.7.1), the other recipients go on.
    fn list_refusal(&self, rcpt: &str) -> Option<Reply> {
        if self.direction() != Direction::Inbound {
            return None;
        }
        let tx = self.tx.as_ref()?;
        let entry = self
            .pipeline()
            .list_block_at_rcpt(&tx.mail_from, self.peer.ip(), rcpt)?;
        tracing::info!(client = %self.peer, rcpt = %printable(rcpt), entry = %entry, "recipient refused by block list");
        Some(reply::RECIPIENT_REFUSED_BY_RULE)
    }

    /// `[[rules]]` for this recipient at RCPT TO (envelope and connection only); `None`
    /// without rules.
    fn rules_at_rcpt(&self, rcpt: &str) -> Option<Evaluation> {
        let rules = self.pipeline().rules();
        if rules.is_empty() {
            return None;
        }
        let tx = self.tx.as_ref()?;
        let facts = EnvelopeFacts::new(
            self.direction(),
            self.peer.ip(),
            self.helo.as_deref().unwrap_or_default(),
            self.tls.as_ref(),
            &tx.mail_from,
        );
        Some(rules.evaluate(&facts, &Address::new(rcpt), None))
    }

    /// A rule's `reject` refuses this recipient (550 5.7.1, with the rule's text when it
    /// has one), a `tempfail` defers it (451 4.7.1).
    fn rule_refusal(&self, eval: &Evaluation, rcpt: &str) -> Option<(Reply, String)> {
        let (r, text, rule) = reply::for_rule_at_rcpt(eval)?;
        tracing::info!(client = %self.peer, rcpt = %printable(rcpt), rule = %rule, code = r.code, "recipient refused by rule");
        Some((r, text))
    }

    fn data(&mut self) -> Next {
        let Some(tx) = self.tx.as_ref() else {
            return self.bad(reply::NEED_MAIL);
        };
        if tx.rcpts.is_empty() {
            return self.bad(reply::NEED_RCPT);
        }
        if tx.bdat_used {
            return self.bad(reply::DATA_THEN_BDAT);
        }
        self.reply(reply::START_DATA);
        self.mode = Mode::Data(DataReceiver::new());
        Next::Continue
    }

    fn bdat(&mut self, chunk_size: usize, is_last: bool) -> Next {
        let max = self.config().max_message_size;
        let refusal = match self.tx.as_ref() {
            None => Some(reply::NEED_MAIL),
            Some(tx) if tx.rcpts.is_empty() => Some(reply::NEED_RCPT),
            Some(tx) if tx.body.len().saturating_add(chunk_size) > max => Some(reply::TOO_BIG),
            Some(_) => None,
        };
        if let Some(answer) = refusal {
            // The chunk's bytes must still be read to stay in step with the client.
            if answer == reply::TOO_BIG {
                self.tx = None;
            }
            self.mode = Mode::BdatDiscard(DummyDataReceiver::new_bdat(chunk_size), answer);
            return Next::Continue;
        }
        let tx = self.tx.as_mut().expect("checked above");
        tx.bdat_used = true;
        self.mode = Mode::Bdat(chunk_size, is_last);
        Next::Continue
    }

    async fn starttls(&mut self) -> Next {
        if self.tls.is_some() {
            return self.bad(reply::TLS_ACTIVE);
        }
        if !self.offers_starttls() {
            return self.bad(reply::NOT_IMPLEMENTED);
        }
        self.reply(reply::READY_TLS);
        if self.flush().await.is_err() {
            return Next::Close;
        }
        // RFC 3207 §4.2: nothing sent before the handshake may count after it.
        let injected = self.inbuf.len() - self.pos;
        if injected > 0 {
            tracing::warn!(client = %self.peer, bytes = injected, "discarding plaintext pipelined after STARTTLS");
        }
        self.inbuf.clear();
        self.pos = 0;
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Next::Close;
        };
        let acceptor = self
            .listener
            .acceptor
            .as_ref()
            .expect("offers_starttls checked it");
        let ssl = match openssl::ssl::Ssl::new(acceptor.context()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot create TLS session");
                return Next::Close;
            }
        };
        let mut tls_stream = match tokio_openssl::SslStream::new(ssl, tcp) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot create TLS stream");
                return Next::Close;
            }
        };
        let wait = self.config().idle_timeout();
        match tokio::time::timeout(wait, Pin::new(&mut tls_stream).accept()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(client = %self.peer, error = %e, "TLS handshake failed");
                return Next::Close;
            }
            Err(_) => {
                tracing::info!(client = %self.peer, "TLS handshake timed out");
                return Next::Close;
            }
        }
        self.tls = Some(tls::facts(tls_stream.ssl()));
        self.stream = Some(Stream::Tls(Box::new(tls_stream)));
        self.shared.metrics.tls_session();
        // The session starts over: the client must say EHLO again.
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        Next::Continue
    }

    // === end of message ===

    /// The message is complete: run the pipeline, store it if the verdict allows, answer.
    async fn finish_message(&mut self) {
        let started = Instant::now();
        let Some(mut tx) = self.tx.take() else { return };
        // `_large` is the large-body permit: held until this message is done with.
        let (body, _large) = match self.complete_body(&mut tx).await {
            Ok(b) => b,
            Err(r) => {
                self.reply(r);
                return;
            }
        };
        let direction = self.direction();
        let envelope = Envelope {
            direction,
            client_ip: self.peer.ip(),
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: tx.mail_from,
            rcpt_to: tx.rcpts,
            smtputf8: tx.smtputf8,
            body_8bit: tx.body_8bit,
            tls: self.tls.clone(),
        };
        let outcome = self.pipeline().run(&envelope, &body).await;
        let mut stored = false;
        // The log's name for the message; the first stored copy's id once it is stored.
        let mut id = new_queue_id();
        let refusal = reply::for_outcome(&outcome);
        match &refusal {
            Some((r, text)) => write_reply(&mut self.out, r.code, r.enhanced, text),
            None => {
                let arrival = crate::queue::Arrival {
                    envelope: &envelope,
                    client_ip: self.peer.ip(),
                    hostname: &self.config().hostname,
                    protocol: self.protocol(envelope.smtputf8),
                    tls: self.tls.as_ref(),
                    received: &body,
                };
                // All copies in one commit, then the one 250.
                match crate::queue::admit(&self.shared.queue, &arrival, &outcome.verdict()).await {
                    Ok(ids) => {
                        stored = true;
                        id = ids[0].clone();
                        let (r, text) = reply::queued(&ids);
                        write_reply(&mut self.out, r.code, r.enhanced, &text);
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot queue message");
                        self.reply(reply::QUEUE_ERROR);
                    }
                }
            }
        }
        if stored || refusal.is_some() {
            // Learn from what the stages judged: the S/MIME plaintext of a decrypted message.
            let judged = match direction {
                Direction::Inbound => outcome.copies.first().and_then(|c| c.body.as_deref()),
                Direction::Outbound => None,
            };
            self.pipeline()
                .learn(&envelope, &outcome, stored, judged.unwrap_or(&body));
        }
        let verdict = if stored || refusal.is_some() {
            outcome.action.as_str()
        } else {
            "tempfail"
        };
        self.shared.metrics.message(direction.as_str(), verdict);
        for s in &outcome.card.symbols {
            self.shared.metrics.symbol(s.name);
        }
        tracing::info!(
            target: "portcullis::message",
            id = %id,
            direction = direction.as_str(),
            client_ip = %self.peer.ip(),
            helo = %envelope.helo,
            mail_from = %printable(&envelope.mail_from),
            rcpt = %envelope.rcpt_to.join(","),
            size = body.len(),
            tls = self.tls.as_ref().map(|t| t.version.as_str()).unwrap_or("none"),
            verdict,
            score = outcome.card.score(),
            symbols = %outcome.card.summary(),
            rules = %outcome
                .rules
                .iter()
                .map(|m| m.rule.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason = %outcome.reason,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "message"
        );
    }

    /// The received body in memory, or the reply that refuses the message: over
    /// max_message_size, bare CR or LF under `bare_line_endings = "reject"`, or a spool
    /// file that could not be written or read (a temporary failure; nothing is lost, the
    /// client keeps the message).
    async fn complete_body(
        &mut self,
        tx: &mut Transaction,
    ) -> Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>), Reply> {
        if tx.oversize {
            tracing::info!(client = %self.peer, "message over max_message_size refused");
            return Err(reply::TOO_BIG);
        }
        if tx.lines.bare_seen && self.config().limits.bare_line_endings == BareLineEndings::Reject {
            tracing::info!(client = %self.peer, "message with bare CR or LF refused");
            return Err(reply::BARE_LINE_ENDING);
        }
        let body = std::mem::replace(&mut tx.body, Body::new(&self.shared.incoming));
        body.into_bytes(&self.shared.incoming).await.map_err(|e| {
            tracing::error!(client = %self.peer, error = %e, "message body lost in transfer; tempfailed");
            reply::QUEUE_ERROR
        })
    }

    /// The protocol name of our `Received:` line (RFC 3848).
    fn protocol(&self, smtputf8: bool) -> &'static str {
        match (smtputf8, self.esmtp, self.tls.is_some()) {
            (true, _, true) => "UTF8SMTPS",
            (true, _, false) => "UTF8SMTP",
            (false, true, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, true) => "SMTPS",
            (false, false, false) => "SMTP",
        }
    }
}

enum ReadError {
    Timeout,
    Shutdown,
    Io(std::io::Error),
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn parse_error_reply(e: &ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => reply::UNKNOWN_COMMAND,
        ParseError::InvalidSenderAddress => reply::BAD_SENDER,
        ParseError::InvalidRecipientAddress => reply::BAD_RECIPIENT,
        ParseError::UnsupportedParameter { .. } => reply::UNSUPPORTED_PARAM,
        ParseError::ResponseTooLong => reply::LINE_TOO_LONG,
        ParseError::SyntaxError { .. }
        | ParseError::InvalidParameter { .. }
        | ParseError::NeedsMoreData { .. }
        | ParseError::InvalidResponse { .. } => reply::SYNTAX,
    }
}
