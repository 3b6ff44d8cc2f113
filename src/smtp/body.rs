//! Receiving a message body: where DATA ends, dot-unstuffing, line endings, and where the
//! bytes are held while they arrive.
//!
//! SECURITY: DATA ends only at CRLF "." CRLF. A server that also ends it at other
//! sequences (`LF . LF`, `CR . CR`, `CRLF . CR CRLF`) while the next hop does not, or the
//! other way round, lets a client smuggle a second message past our checks (SMTP
//! smuggling). So only CRLF counts as a line end here, and what we forward has no bare CR
//! or LF left for the next hop to read differently: they are made CRLF, or the message is
//! refused (`limits.bare_line_endings`). The same rule applies to BDAT chunks.
//!
//! A body stays in memory up to `limits.spool_threshold_bytes`; past that it goes to a file
//! in `<data_dir>/incoming/`, removed when the session is done with it. At the end of the
//! message a large body is read back for the pipeline, at most
//! `limits.max_large_messages_in_memory` at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{BareLineEndings, Limits};

/// The directory for bodies in transfer, and the turnstile for large bodies in memory.
pub struct Incoming {
    dir: PathBuf,
    large: Arc<Semaphore>,
    threshold: usize,
}

impl Incoming {
    /// Create `<data_dir>/incoming` (mode 0700) and remove what an earlier run left there:
    /// those bodies were never acknowledged, so their clients send them again.
    pub fn open(data_dir: &Path, limits: &Limits) -> anyhow::Result<Incoming> {
        let dir = data_dir.join("incoming");
        crate::store::create_private_dir(&dir)?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Incoming {
            dir,
            large: Arc::new(Semaphore::new(limits.max_large_messages_in_memory)),
            threshold: limits.spool_threshold_bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A body file in `incoming/`; removed when dropped (message done, refused, or the client
/// went away).
struct SpoolFile {
    path: PathBuf,
    file: tokio::fs::File,
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Once a body is in a file, bytes are written out in pieces of this size.
const SPOOL_WRITE: usize = 128 * 1024;

/// The body of one message as it arrives. `push` only appends to memory; `settle` (after
/// each read) moves what is held to the file once the body is past the threshold, so the
/// session never waits on the disk inside the receiver and holds at most about
/// `threshold` bytes.
pub struct Body {
    mem: Vec<u8>,
    file: Option<SpoolFile>,
    len: usize,
    threshold: usize,
    dir: PathBuf,
    /// Over max_message_size: the rest is counted, not kept.
    discarding: bool,
    /// Writing the spool file failed: the message gets a temporary failure.
    error: Option<String>,
}

impl Body {
    pub fn new(incoming: &Incoming) -> Body {
        Body {
            mem: Vec::new(),
            file: None,
            len: 0,
            threshold: incoming.threshold,
            dir: incoming.dir.clone(),
            discarding: false,
            error: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True while the body is in a file (for tests and the log).
    pub fn is_spooled(&self) -> bool {
        self.file.is_some()
    }

    /// Drop everything held and keep only counting (the message will be refused).
    pub fn discard(&mut self) {
        self.discarding = true;
        self.mem = Vec::new();
        self.file = None;
    }

    /// Append bytes (in memory; see `settle`).
    pub fn push(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        if self.discarding || self.error.is_some() {
            return;
        }
        self.mem.extend_from_slice(bytes);
    }

    /// Move held bytes to the spool file when the body is past the threshold (creating
    /// the file the first time). Written to the page cache, no fsync: the queue makes the
    /// accepted copy durable.
    pub async fn settle(&mut self) {
        if self.discarding || self.error.is_some() {
            return;
        }
        let due = match self.file {
            None => self.mem.len() > self.threshold,
            Some(_) => self.mem.len() >= SPOOL_WRITE,
        };
        if due && let Err(e) = self.spill().await {
            self.fail(e);
        }
    }

    async fn spill(&mut self) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        if self.file.is_none() {
            let path = self
                .dir
                .join(format!("{}.part", crate::queue::new_queue_id()));
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .await
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            self.file = Some(SpoolFile { path, file });
        }
        let spool = self.file.as_mut().expect("opened above");
        spool
            .file
            .write_all(&self.mem)
            .await
            .map_err(|e| format!("cannot write {}: {e}", spool.path.display()))?;
        if self.mem.capacity() > 2 * SPOOL_WRITE {
            // The memory that held the first `threshold` bytes is not needed any more.
            self.mem = Vec::with_capacity(2 * SPOOL_WRITE);
        } else {
            self.mem.clear();
        }
        Ok(())
    }

    fn fail(&mut self, why: String) {
        tracing::error!(error = %why, "cannot spool an incoming message body; it will be tempfailed");
        self.error = Some(why);
        self.mem = Vec::new();
        self.file = None;
    }

    /// The whole body in memory for the pipeline. A spooled body first waits for one of
    /// the large-body permits (kept until the message is done) and its file is removed
    /// once read. `Err` when the spool file could not be written or read.
    pub async fn into_bytes(
        mut self,
        incoming: &Incoming,
    ) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), String> {
        use tokio::io::AsyncWriteExt;
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.file.is_none() {
            return Ok((std::mem::take(&mut self.mem), None));
        }
        if !self.mem.is_empty() {
            self.spill().await?;
        }
        let mut spool = self.file.take().expect("checked above");
        spool
            .file
            .flush()
            .await
            .map_err(|e| format!("cannot write {}: {e}", spool.path.display()))?;
        let permit = incoming
            .large
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| format!("large-body permits closed: {e}"))?;
        // Read in one allocation of the file's size: no growth copies.
        let bytes = tokio::fs::read(&spool.path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", spool.path.display()))?;
        drop(spool);
        Ok((bytes, Some(permit)))
    }
}

/// The line-ending rule over content bytes, across reads and BDAT chunks: CRLF passes,
/// a bare CR or LF is made CRLF (or only noted, when the message will be refused).
#[derive(Debug)]
pub struct LineEndings {
    normalize: bool,
    pending_cr: bool,
    /// A bare CR or LF was seen.
    pub bare_seen: bool,
}

impl LineEndings {
    pub fn new(policy: BareLineEndings) -> LineEndings {
        LineEndings {
            normalize: policy == BareLineEndings::Normalize,
            pending_cr: false,
            bare_seen: false,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8], out: &mut Body) {
        while !bytes.is_empty() {
            if self.pending_cr {
                self.pending_cr = false;
                if bytes[0] == b'\n' {
                    out.push(b"\r\n");
                    bytes = &bytes[1..];
                } else {
                    self.bare(b"\r", out);
                }
                continue;
            }
            match memchr::memchr2(b'\r', b'\n', bytes) {
                None => {
                    out.push(bytes);
                    return;
                }
                Some(i) => {
                    out.push(&bytes[..i]);
                    if bytes[i] == b'\r' {
                        self.pending_cr = true;
                    } else {
                        self.bare(b"\n", out);
                    }
                    bytes = &bytes[i + 1..];
                }
            }
        }
    }

    /// The end of the content: a CR still waiting for its LF is a bare CR.
    pub fn finish(&mut self, out: &mut Body) {
        if self.pending_cr {
            self.pending_cr = false;
            self.bare(b"\r", out);
        }
    }

    fn bare(&mut self, what: &[u8], out: &mut Body) {
        self.bare_seen = true;
        out.push(if self.normalize { b"\r\n" } else { what });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// Just after CRLF (or at the start): a "." here is stuffing or the end.
    LineStart,
    Text,
    /// "." at the start of a line.
    Dot,
    /// "." CR at the start of a line: LF ends the data.
    DotCr,
}

/// The DATA body (RFC 5321 §4.5.2): ends at CRLF "." CRLF only; a "." at the start of a
/// line (after CRLF) is removed.
#[derive(Debug)]
pub struct DataReceiver {
    state: DataState,
    /// The last content byte passed on was CR.
    last_cr: bool,
}

impl Default for DataReceiver {
    fn default() -> Self {
        DataReceiver::new()
    }
}

impl DataReceiver {
    pub fn new() -> DataReceiver {
        // The CRLF of the DATA command counts: ".\r\n" at once is an empty message.
        DataReceiver {
            state: DataState::LineStart,
            last_cr: false,
        }
    }

    /// Take bytes of `input`; returns how many were used and whether the end was reached
    /// (the bytes after it are the next commands).
    pub fn ingest(
        &mut self,
        input: &[u8],
        lines: &mut LineEndings,
        out: &mut Body,
    ) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                DataState::LineStart => {
                    if input[i] == b'.' {
                        self.state = DataState::Dot;
                        i += 1;
                    } else {
                        self.state = DataState::Text;
                    }
                }
                DataState::Dot => {
                    if input[i] == b'\r' {
                        self.state = DataState::DotCr;
                        i += 1;
                    } else {
                        // The stuffing dot is dropped; the line goes on.
                        self.state = DataState::Text;
                    }
                }
                DataState::DotCr => {
                    if input[i] == b'\n' {
                        return (i + 1, true);
                    }
                    // "." CR then something else: a line holding a CR; not the end.
                    lines.push(b"\r", out);
                    self.last_cr = true;
                    self.state = DataState::Text;
                }
                DataState::Text => match memchr::memchr(b'\n', &input[i..]) {
                    Some(k) => {
                        let run = &input[i..=i + k];
                        let crlf = if k > 0 {
                            input[i + k - 1] == b'\r'
                        } else {
                            self.last_cr
                        };
                        lines.push(run, out);
                        self.last_cr = false;
                        if crlf {
                            self.state = DataState::LineStart;
                        }
                        i += k + 1;
                    }
                    None => {
                        let run = &input[i..];
                        lines.push(run, out);
                        self.last_cr = run.last() == Some(&b'\r');
                        i = input.len();
                    }
                },
            }
        }
        (i, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(dir: &Path, threshold: usize) -> Incoming {
        let limits = Limits {
            spool_threshold_bytes: threshold,
            ..Limits::default()
        };
        Incoming::open(dir, &limits).unwrap()
    }

    /// Feed `input` in pieces of `step` bytes; (body, bytes used, ended, bare seen).
    fn run(input: &[u8], step: usize, policy: BareLineEndings) -> (Vec<u8>, usize, bool, bool) {
        let dir = tempfile::tempdir().unwrap();
        let inc = incoming(dir.path(), 1 << 20);
        let mut body = Body::new(&inc);
        let mut rx = DataReceiver::new();
        let mut le = LineEndings::new(policy);
        let mut used = 0;
        let mut done = false;
        for chunk in input.chunks(step) {
            let (n, d) = rx.ingest(chunk, &mut le, &mut body);
            used += n;
            if d {
                done = true;
                break;
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (bytes, _) = rt.block_on(body.into_bytes(&inc)).unwrap();
        (bytes, used, done, le.bare_seen)
    }

    /// Every CR is followed by LF and every LF follows a CR.
    fn crlf_only(b: &[u8]) -> bool {
        b.iter().enumerate().all(|(i, &c)| match c {
            b'\r' => b.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && b[i - 1] == b'\r',
            _ => true,
        })
    }

    #[test]
    fn data_ends_only_at_crlf_dot_crlf() {
        for step in [1, 2, 3, 1000] {
            let n = BareLineEndings::Normalize;
            let (b, used, done, bare) = run(b"a\r\n..b\r\n.\r\nMAIL", step, n);
            assert!(done && !bare, "{step}");
            assert_eq!(b, b"a\r\n.b\r\n");
            assert_eq!(used, 11);
            let (b, _, done, _) = run(b".\r\n", step, n);
            assert!(done && b.is_empty());
            for smuggle in [
                &b"a\r\n.\r\r\nMAIL FROM:<x>\r\n"[..],
                b"a\n.\nMAIL FROM:<x>\r\n",
                b"a\r.\rMAIL FROM:<x>\r\n",
                b"a\r\n.\nMAIL FROM:<x>\r\n",
                b"a\n.\r\nMAIL FROM:<x>\r\n",
            ] {
                let (b, used, done, bare) = run(smuggle, step, n);
                assert!(!done, "{smuggle:?} ended DATA");
                assert_eq!(used, smuggle.len());
                assert!(bare, "{smuggle:?}");
                assert!(crlf_only(&b), "{smuggle:?} gave {b:?}");
            }
        }
    }

    #[test]
    fn bare_endings_are_normalized_or_only_noted() {
        let (b, _, _, bare) = run(b"x\ry\nz\r\n.\r\n", 1, BareLineEndings::Normalize);
        assert!(bare);
        assert_eq!(b, b"x\r\ny\r\nz\r\n");
        let (b, _, _, bare) = run(b"x\ry\nz\r\n.\r\n", 1000, BareLineEndings::Reject);
        assert!(bare);
        assert_eq!(b, b"x\ry\nz\r\n");
    }

    #[test]
    fn large_bodies_go_to_a_file_that_is_removed_after_reading() {
        let dir = tempfile::tempdir().unwrap();
        let inc = incoming(dir.path(), 10);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let files = || std::fs::read_dir(inc.dir()).unwrap().count();
        let mut body = Body::new(&inc);
        body.push(b"0123456789");
        rt.block_on(body.settle());
        assert!(!body.is_spooled());
        body.push(b"abc");
        rt.block_on(body.settle());
        assert!(body.is_spooled());
        body.push(b"def");
        rt.block_on(body.settle());
        assert_eq!(files(), 1);
        let (bytes, permit) = rt.block_on(body.into_bytes(&inc)).unwrap();
        assert_eq!(bytes, b"0123456789abcdef");
        assert!(permit.is_some());
        assert_eq!(files(), 0);
        // a refused body's file goes too
        let mut body = Body::new(&inc);
        body.push(&[b'x'; 20]);
        rt.block_on(body.settle());
        assert_eq!(files(), 1);
        drop(body);
        assert_eq!(files(), 0);
    }

    #[test]
    fn large_bodies_wait_for_a_permit() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            spool_threshold_bytes: 4,
            max_large_messages_in_memory: 1,
            ..Limits::default()
        };
        let inc = Incoming::open(dir.path(), &limits).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut a = Body::new(&inc);
            let mut b = Body::new(&inc);
            for body in [&mut a, &mut b] {
                body.push(b"large enough");
                body.settle().await;
                assert!(body.is_spooled());
            }
            let (_, permit) = a.into_bytes(&inc).await.unwrap();
            let wait = std::time::Duration::from_millis(100);
            let mut second = Box::pin(b.into_bytes(&inc));
            assert!(
                tokio::time::timeout(wait, &mut second).await.is_err(),
                "a second large body was loaded while the only permit was held"
            );
            drop(permit);
            let (bytes, _) = tokio::time::timeout(wait, second).await.unwrap().unwrap();
            assert_eq!(bytes, b"large enough");
        });
    }
}
