//! The background side of the console: every API call runs in its own tokio task, so the
//! event loop never waits for the gateway. Jobs go in, [`Reply`]s come back; an action on
//! many messages reports its progress after each one.

use std::sync::Arc;

use base64::Engine;
use tokio::sync::mpsc;

use crate::action::Action;
use crate::api::types::*;
use crate::api::{Api, ApiError, ApiResult};

/// Data a screen loads.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetch {
    Health,
    /// The caller's role.
    WhoAmI,
    Counters,
    /// A page of held entries; `after`: the cursor of the page before (appends).
    Held {
        query: HeldQuery,
        after: Option<String>,
        limit: u32,
    },
    /// One held message with its preview.
    HeldDetail(String),
    Queue,
    Certs,
    Trust,
    Lists,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Fetch(Fetch),
    Act(Action),
}

#[derive(Debug, Clone)]
pub enum Reply {
    Health(ApiResult<Health>),
    WhoAmI(ApiResult<WhoAmI>),
    Counters(ApiResult<Counters>),
    Held {
        query: HeldQuery,
        append: bool,
        result: ApiResult<HeldPage>,
    },
    HeldDetail {
        message: String,
        result: ApiResult<(HeldMessage, Preview)>,
    },
    Queue(ApiResult<Vec<QueueMessage>>),
    Certs(ApiResult<CertList>),
    Trust(ApiResult<Vec<TrustDomain>>),
    Lists(ApiResult<Vec<ListEntry>>),
    /// `done` of `total` steps of the running action.
    Progress {
        done: usize,
        total: usize,
    },
    /// The action finished: what it did, or why it stopped.
    Acted(Outcome),
}

/// The end of an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What was done, in words.
    pub summary: String,
    /// The error that stopped it or that some steps met.
    pub error: Option<ApiError>,
}

/// Start the worker: send jobs on the first channel, read replies from the second.
pub fn spawn<A: Api>(api: Arc<A>) -> (mpsc::UnboundedSender<Job>, mpsc::UnboundedReceiver<Reply>) {
    let (job_tx, mut job_rx) = mpsc::unbounded_channel::<Job>();
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(job) = job_rx.recv().await {
            let api = api.clone();
            let replies = reply_tx.clone();
            tokio::spawn(async move { run(&*api, job, &replies).await });
        }
    });
    (job_tx, reply_rx)
}

/// Run one job, sending its reply (and progress) on `replies`.
pub async fn run<A: Api>(api: &A, job: Job, replies: &mpsc::UnboundedSender<Reply>) {
    let reply = match job {
        Job::Fetch(fetch) => fetch_one(api, fetch).await,
        Job::Act(action) => Reply::Acted(act(api, action, replies).await),
    };
    let _ = replies.send(reply);
}

async fn fetch_one<A: Api>(api: &A, fetch: Fetch) -> Reply {
    match fetch {
        Fetch::Health => Reply::Health(api.health().await),
        Fetch::WhoAmI => Reply::WhoAmI(api.whoami().await),
        Fetch::Counters => Reply::Counters(api.counters().await),
        Fetch::Held {
            query,
            after,
            limit,
        } => {
            let result = api.held_list(&query, limit, after.as_deref()).await;
            Reply::Held {
                query,
                append: after.is_some(),
                result,
            }
        }
        Fetch::HeldDetail(message) => {
            let (shown, preview) =
                tokio::join!(api.held_show(&message), api.held_preview(&message));
            let result = shown.and_then(|s| preview.map(|p| (s, p)));
            Reply::HeldDetail { message, result }
        }
        Fetch::Queue => Reply::Queue(api.queue_list().await),
        Fetch::Certs => Reply::Certs(api.certs_list().await),
        Fetch::Trust => Reply::Trust(api.trust_list().await),
        Fetch::Lists => Reply::Lists(api.lists_all().await),
    }
}

/// Steps of a bulk action, counting what went wrong without stopping, except for errors
/// that every further step would meet too (no role, no gateway).
struct Tally {
    done: usize,
    ok: usize,
    failed: usize,
    first_error: Option<ApiError>,
    total: usize,
}

impl Tally {
    fn new(total: usize) -> Tally {
        Tally {
            done: 0,
            ok: 0,
            failed: 0,
            first_error: None,
            total,
        }
    }

    /// Count a step; `false`: stop, the rest would fail the same way.
    fn step<T>(&mut self, r: &ApiResult<T>, replies: &mpsc::UnboundedSender<Reply>) -> bool {
        self.done += 1;
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => {
                self.failed += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.clone());
                }
            }
        }
        if self.total > 1 {
            let _ = replies.send(Reply::Progress {
                done: self.done,
                total: self.total,
            });
        }
        !matches!(r, Err(e) if e.is_forbidden() || e.is_unreachable())
    }
}

/// Largest certificate file the console reads (a PKCS#12 bundle is kilobytes; this only
/// keeps a wrong path, a disk image say, from being read into memory).
pub const MAX_UPLOAD_BYTES: u64 = 16 * 1024 * 1024;

async fn read_upload(path: &std::path::Path, password: Option<String>) -> ApiResult<CertUpload> {
    let cannot =
        |e: std::io::Error| ApiError::Local(format!("cannot read {}: {e}", path.display()));
    let size = tokio::fs::metadata(path).await.map_err(cannot)?.len();
    if size > MAX_UPLOAD_BYTES {
        return Err(ApiError::Local(format!(
            "{} has {size} bytes: not a certificate file (at most {MAX_UPLOAD_BYTES})",
            path.display()
        )));
    }
    let data = tokio::fs::read(path).await.map_err(cannot)?;
    Ok(CertUpload {
        data: base64::engine::general_purpose::STANDARD.encode(data),
        name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
        password,
    })
}

fn imported(report: &ImportReport) -> String {
    let mut s = match report.stored.as_slice() {
        [] => "nothing stored".to_string(),
        [one] => format!("{}: {}", one.subject, one.change),
        many => format!("{} certificates stored", many.len()),
    };
    if let Some(w) = report.warnings.first() {
        s.push_str(&format!(" (warning: {w})"));
    }
    s
}

fn single<T>(r: ApiResult<T>, say: impl FnOnce(T) -> String) -> Outcome {
    match r {
        Ok(v) => Outcome {
            summary: say(v),
            error: None,
        },
        Err(e) => Outcome {
            summary: String::new(),
            error: Some(e),
        },
    }
}

async fn act<A: Api>(api: &A, action: Action, replies: &mpsc::UnboundedSender<Reply>) -> Outcome {
    match action {
        Action::Release {
            targets,
            learn,
            allow,
        } => {
            let mut tally = Tally::new(targets.len() + allow.len());
            let mut released = 0;
            for t in &targets {
                let r = api.held_release(t, learn).await;
                if let Ok(report) = &r {
                    released += report.touched.max(1);
                }
                if !tally.step(&r, replies) {
                    break;
                }
            }
            let mut allowed = 0;
            if tally.first_error.as_ref().is_none_or(|e| !e.is_forbidden()) {
                for a in &allow {
                    let r = api.held_allow_sender(&a.message, &a.recipient).await;
                    allowed += usize::from(r.is_ok());
                    if !tally.step(&r, replies) {
                        break;
                    }
                }
            }
            let mut summary = format!("released {released} of {}", targets.len());
            if learn {
                summary.push_str(", learned as ham");
            }
            if !allow.is_empty() {
                summary.push_str(&format!(", {allowed} sender(s) allowed"));
            }
            finish(summary, tally)
        }
        Action::DeleteHeld { targets, learn } => {
            let mut tally = Tally::new(targets.len());
            let mut deleted = 0;
            for t in &targets {
                let r = api.held_delete(t, learn).await;
                if let Ok(report) = &r {
                    deleted += report.touched.max(1);
                }
                if !tally.step(&r, replies) {
                    break;
                }
            }
            let mut summary = format!("deleted {deleted} of {}", targets.len());
            if learn {
                summary.push_str(", learned as spam");
            }
            finish(summary, tally)
        }
        Action::QueueRetry { id } => single(api.queue_retry(&id).await, |r| {
            format!("{}: {}", r.id, r.result)
        }),
        Action::QueueDelete { id } => single(api.queue_delete(&id).await, |r| {
            format!("{}: {}", r.id, r.result)
        }),
        Action::CertImport { path, password } => {
            let upload = match read_upload(&path, password.map(|p| p.0)).await {
                Ok(u) => u,
                Err(e) => return single::<()>(Err(e), |_| String::new()),
            };
            single(api.cert_import(&upload).await, |r| imported(&r))
        }
        Action::CertTrustCa { path } => {
            let upload = match read_upload(&path, None).await {
                Ok(u) => u,
                Err(e) => return single::<()>(Err(e), |_| String::new()),
            };
            single(api.cert_trust_ca(&upload).await, |r| {
                format!("trusted: {}", imported(&r))
            })
        }
        Action::CertDelete { fingerprint, .. } => {
            single(api.cert_delete(&fingerprint).await, |r| {
                format!(
                    "deleted {}{}",
                    r.subject,
                    if r.had_private_key {
                        " and its private key"
                    } else {
                        ""
                    }
                )
            })
        }
        Action::TrustPin { domain, level } => {
            single(api.trust_pin(&domain, level).await, |r| match r.pinned {
                Some(l) => format!("{} pinned to {l}", r.domain),
                None => format!("{}: learned trust again", r.domain),
            })
        }
        Action::DigestFrequency {
            recipient,
            frequency,
        } => single(
            api.digest_set(&recipient, frequency.as_deref()).await,
            |r| format!("{}: quarantine reports {}", r.recipient, r.frequency),
        ),
        Action::ListAdd(entry) => single(api.lists_add(&entry).await, |r| {
            format!("{} entry {} ({})", r.entry.list, r.entry.sender, r.change)
        }),
        Action::ListRemove { id, .. } => single(api.lists_remove(id).await, |r| {
            format!("removed {} entry {}", r.list, r.sender)
        }),
    }
}

fn finish(mut summary: String, tally: Tally) -> Outcome {
    if tally.failed > 0 {
        summary.push_str(&format!("; {} failed", tally.failed));
    }
    if tally.done < tally.total {
        summary.push_str(&format!(
            "; stopped after {} of {}",
            tally.done, tally.total
        ));
    }
    Outcome {
        summary,
        error: tally.first_error,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::action::AllowSender;
    use std::sync::Mutex;

    /// An API that records calls; `forbid` answers 403 to every change.
    #[derive(Default)]
    pub struct Fake {
        pub calls: Mutex<Vec<String>>,
        pub forbid: bool,
    }

    fn forbidden() -> ApiError {
        ApiError::Status {
            status: 403,
            code: "forbidden".into(),
            message: "read only".into(),
        }
    }

    impl Fake {
        fn record(&self, s: String) -> ApiResult<()> {
            self.calls.lock().unwrap().push(s);
            if self.forbid {
                Err(forbidden())
            } else {
                Ok(())
            }
        }
    }

    impl Api for Fake {
        async fn health(&self) -> ApiResult<Health> {
            Ok(Health::default())
        }
        async fn counters(&self) -> ApiResult<Counters> {
            Ok(Counters::default())
        }
        async fn whoami(&self) -> ApiResult<WhoAmI> {
            Ok(WhoAmI::default())
        }
        async fn held_list(&self, _: &HeldQuery, _: u32, _: Option<&str>) -> ApiResult<HeldPage> {
            Ok(HeldPage::default())
        }
        async fn held_show(&self, _: &str) -> ApiResult<HeldMessage> {
            Ok(HeldMessage::default())
        }
        async fn held_preview(&self, _: &str) -> ApiResult<Preview> {
            Ok(Preview::default())
        }
        async fn held_release(&self, t: &HeldTarget, learn: bool) -> ApiResult<ActionReport> {
            self.record(format!("release {} {learn}", t.message))?;
            Ok(ActionReport {
                touched: 1,
                ..ActionReport::default()
            })
        }
        async fn held_delete(&self, t: &HeldTarget, learn: bool) -> ApiResult<ActionReport> {
            self.record(format!("delete {} {learn}", t.message))?;
            Ok(ActionReport {
                touched: 1,
                ..ActionReport::default()
            })
        }
        async fn held_allow_sender(&self, m: &str, r: &str) -> ApiResult<ListAdded> {
            self.record(format!("allow sender of {m} for {r}"))?;
            Ok(ListAdded::default())
        }
        async fn queue_list(&self) -> ApiResult<Vec<QueueMessage>> {
            Ok(vec![])
        }
        async fn queue_retry(&self, id: &str) -> ApiResult<QueueActionResult> {
            self.record(format!("retry {id}"))?;
            Ok(QueueActionResult::default())
        }
        async fn queue_delete(&self, id: &str) -> ApiResult<QueueActionResult> {
            self.record(format!("qdelete {id}"))?;
            Ok(QueueActionResult::default())
        }
        async fn certs_list(&self) -> ApiResult<CertList> {
            Ok(CertList::default())
        }
        async fn cert_import(&self, u: &CertUpload) -> ApiResult<ImportReport> {
            self.record(format!("import {:?} {:?}", u.name, u.password))?;
            Ok(ImportReport::default())
        }
        async fn cert_trust_ca(&self, _: &CertUpload) -> ApiResult<ImportReport> {
            Ok(ImportReport::default())
        }
        async fn cert_delete(&self, fp: &str) -> ApiResult<CertDeleted> {
            self.record(format!("certdelete {fp}"))?;
            Ok(CertDeleted::default())
        }
        async fn trust_list(&self) -> ApiResult<Vec<TrustDomain>> {
            Ok(vec![])
        }
        async fn trust_pin(&self, d: &str, l: Option<PinLevel>) -> ApiResult<PinResult> {
            self.record(format!("pin {d} {l:?}"))?;
            Ok(PinResult::default())
        }
        async fn digest_set(&self, r: &str, f: Option<&str>) -> ApiResult<DigestRecipient> {
            self.record(format!("digest {r} {f:?}"))?;
            Ok(DigestRecipient::default())
        }
        async fn lists_all(&self) -> ApiResult<Vec<ListEntry>> {
            Ok(vec![])
        }
        async fn lists_add(&self, e: &NewListEntry) -> ApiResult<ListAdded> {
            self.record(format!("allow {} {:?}", e.sender, e.recipient))?;
            Ok(ListAdded::default())
        }
        async fn lists_remove(&self, id: i64) -> ApiResult<ListEntry> {
            self.record(format!("remove {id}"))?;
            Ok(ListEntry::default())
        }
    }

    fn targets(n: usize) -> Vec<HeldTarget> {
        (0..n)
            .map(|i| HeldTarget {
                message: format!("M{i}"),
                recipient: Some("u@example.test".into()),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_bulk_release_reports_progress_and_adds_allow_entries() {
        let fake = Fake::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let action = Action::Release {
            targets: targets(500),
            learn: true,
            allow: vec![AllowSender {
                message: "M0".into(),
                sender: "a@ext.example".into(),
                recipient: "u@example.test".into(),
            }],
        };
        run(&fake, Job::Act(action), &tx).await;
        drop(tx);
        let mut progress = vec![];
        let mut outcome = None;
        while let Some(r) = rx.recv().await {
            match r {
                Reply::Progress { done, total } => progress.push((done, total)),
                Reply::Acted(o) => outcome = Some(o),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(progress.len(), 501);
        assert_eq!(progress.last(), Some(&(501, 501)));
        let o = outcome.unwrap();
        assert_eq!(
            o.summary,
            "released 500 of 500, learned as ham, 1 sender(s) allowed"
        );
        assert_eq!(o.error, None);
        let calls = fake.calls.lock().unwrap();
        assert_eq!(calls[0], "release M0 true");
        assert_eq!(
            calls.last().unwrap(),
            "allow sender of M0 for u@example.test"
        );
    }

    #[tokio::test]
    async fn a_forbidden_action_stops_at_the_first_refusal() {
        let fake = Fake {
            forbid: true,
            ..Fake::default()
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let action = Action::DeleteHeld {
            targets: targets(3),
            learn: false,
        };
        run(&fake, Job::Act(action), &tx).await;
        drop(tx);
        let mut outcome = None;
        while let Some(r) = rx.recv().await {
            if let Reply::Acted(o) = r {
                outcome = Some(o);
            }
        }
        let o = outcome.unwrap();
        assert!(o.error.unwrap().is_forbidden());
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
        assert_eq!(o.summary, "deleted 0 of 3; 1 failed; stopped after 1 of 3");
    }

    #[tokio::test]
    async fn an_import_sends_the_file_and_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob.p12");
        std::fs::write(&path, b"not really pkcs12").unwrap();
        let fake = Fake::default();
        let (tx, _rx) = mpsc::unbounded_channel();
        let o = act(
            &fake,
            Action::CertImport {
                path: path.clone(),
                password: Some(crate::action::Secret("pw".into())),
            },
            &tx,
        )
        .await;
        assert_eq!(o.error, None);
        assert_eq!(
            fake.calls.lock().unwrap()[0],
            "import Some(\"bob.p12\") Some(\"pw\")"
        );
        let missing = act(
            &fake,
            Action::CertImport {
                path: dir.path().join("none.pem"),
                password: None,
            },
            &tx,
        )
        .await;
        assert!(missing.error.unwrap().to_string().contains("cannot read"));
    }
}
