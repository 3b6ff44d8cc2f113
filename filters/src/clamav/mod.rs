//! The ClamAV stage: every message (the decrypted one, when S/MIME unwrapped it) is
//! streamed to a real clamd with INSTREAM.
//!
//! Findings: `CLAM_VIRUS` (detail: the signature name) forcing the configured action
//! (reject by default, or quarantine); `CLAM_UNSCANNED` when a message over clamd's stream
//! limit is let through by config. clamd unreachable, slow or answering an error is a stage
//! failure: the pipeline's fail mode applies (451 by default, never a silent pass).

pub mod clamd;
mod session;

use std::sync::Arc;

use crate::{Action, MessageContext, Stage, StageError, StageFuture, Symbol};
use clamd::{Clamd, Verdict};

/// What to do with a message larger than clamd accepts (its `StreamMaxLength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OversizeAction {
    /// 451: nothing is accepted unscanned (the default).
    Tempfail,
    /// Pass it on with a `CLAM_UNSCANNED` symbol.
    Accept,
    /// 554: refuse it.
    Reject,
}

pub struct ClamavStage {
    pub clamd: Arc<Clamd>,
    /// Reject (default) or quarantine an infected message.
    pub virus_action: Action,
    /// Bytes clamd accepts in one stream; larger messages get `oversize_action`.
    pub max_stream_size: usize,
    pub oversize_action: OversizeAction,
}

impl Stage for ClamavStage {
    fn name(&self) -> &'static str {
        "clamav"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            if ctx.raw.len() > self.max_stream_size {
                let detail = format!(
                    "{} bytes > max_stream_size {}",
                    ctx.raw.len(),
                    self.max_stream_size
                );
                return match self.oversize_action {
                    OversizeAction::Tempfail => {
                        Err(StageError(format!("message too large to scan: {detail}")))
                    }
                    OversizeAction::Accept => Ok(vec![Symbol::new("CLAM_UNSCANNED", detail)]),
                    OversizeAction::Reject => Ok(vec![
                        Symbol::new("CLAM_UNSCANNED", detail).forcing(Action::Reject),
                    ]),
                };
            }
            match self.clamd.scan(ctx.raw).await {
                Ok(Verdict::Clean) => Ok(Vec::new()),
                Ok(Verdict::Infected(name)) => Ok(vec![
                    Symbol::new("CLAM_VIRUS", name).forcing(self.virus_action),
                ]),
                Ok(Verdict::Error(e)) => Err(StageError(format!("clamd error: {e}"))),
                Err(e) => Err(StageError(e.0)),
            }
        })
    }
}
