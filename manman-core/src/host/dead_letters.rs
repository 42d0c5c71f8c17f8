//! [`DeadLetters`]: the host's bounded record of the messages it dead-lettered or saw
//! dead-lettered, each with its reason — for `/metrics` (counted by reason) and
//! `GET /api/v1/dead-letters`. The messages themselves stay in `manman.dead-letters` (bounded
//! too) for inspection with the broker's tools.

use crate::host::Metrics;
use crate::id::WorkerId;
use crate::ports::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

/// The most dead letters a host replica remembers; the oldest are forgotten first.
pub const DEAD_LETTER_RECORD: usize = 1_000;

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// It carries no seal: anyone may have sent it.
    Unsigned,
    /// Its seal does not check with the key of the registration it names.
    BadSignature,
    /// It is sealed by a worker that does not exist.
    UnknownWorker,
    /// It is sealed by a registration of its worker that is not the current one.
    OldEpoch,
    /// It is about an instance, a worker or a command its sender does not own.
    NotOwner,
    /// It is about an instance or a command that does not exist.
    UnknownEntity,
    /// Its body does not parse.
    Malformed,
    /// Recording it failed too many times.
    RetriesExhausted,
    /// A command that never ran: it expired in its queue, or its worker refused it (unsigned,
    /// not for it, or unreadable).
    CommandNotRun,
}

impl DeadLetterReason {
    /// Every reason, as counted in `/metrics`.
    pub const ALL: [Self; 9] = [
        Self::Unsigned,
        Self::BadSignature,
        Self::UnknownWorker,
        Self::OldEpoch,
        Self::NotOwner,
        Self::UnknownEntity,
        Self::Malformed,
        Self::RetriesExhausted,
        Self::CommandNotRun,
    ];

    /// Its snake_case name, as in JSON and in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::UnknownWorker => "unknown_worker",
            Self::OldEpoch => "old_epoch",
            Self::NotOwner => "not_owner",
            Self::UnknownEntity => "unknown_entity",
            Self::Malformed => "malformed",
            Self::RetriesExhausted => "retries_exhausted",
            Self::CommandNotRun => "command_not_run",
        }
    }
}

/// One dead letter, as the host recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetter {
    /// When the host dead-lettered it or saw it dead-lettered (host clock).
    pub at: DateTime<Utc>,
    /// The message's id.
    pub message_id: Uuid,
    /// The message's type (`status`, `command_result`, `command`, …).
    pub kind: String,
    /// The worker its seal names, if it has one (not proof that worker sent it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_by: Option<WorkerId>,
    /// Why.
    pub reason: DeadLetterReason,
    /// For a person: what exactly was wrong.
    pub detail: String,
}

/// The record of dead letters, shared by the host's consumers and its API. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct DeadLetters {
    recent: Arc<Mutex<VecDeque<DeadLetter>>>,
    metrics: Metrics,
}

impl DeadLetters {
    /// An empty record that counts in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            recent: Arc::default(),
            metrics,
        }
    }

    /// Records `message`, dead-lettered for `reason`; logs it.
    pub fn record(
        &self,
        message: &Message,
        reason: DeadLetterReason,
        detail: impl Into<String>,
        at: DateTime<Utc>,
    ) {
        let letter = DeadLetter {
            at,
            message_id: message.id,
            kind: message.kind.clone(),
            sealed_by: message.seal.as_ref().map(|s| s.worker_id),
            reason,
            detail: detail.into(),
        };
        tracing::warn!(message_id = %letter.message_id, kind = %letter.kind, sealed_by = ?letter.sealed_by, reason = reason.as_str(), detail = %letter.detail, "dead letter");
        self.metrics.dead_lettered(reason);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == DEAD_LETTER_RECORD {
            recent.pop_front();
        }
        recent.push_back(letter);
    }

    /// The dead letters remembered, newest first.
    pub fn recent(&self) -> Vec<DeadLetter> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_keeps_the_newest_and_counts_every_one() {
        let metrics = Metrics::new();
        let letters = DeadLetters::new(metrics.clone());
        let message = Message::json("status", &1, Utc::now()).unwrap();
        for i in 0..DEAD_LETTER_RECORD + 3 {
            letters.record(
                &message,
                DeadLetterReason::Unsigned,
                format!("#{i}"),
                Utc::now(),
            );
        }
        let recent = letters.recent();
        assert_eq!(recent.len(), DEAD_LETTER_RECORD);
        assert_eq!(recent[0].detail, format!("#{}", DEAD_LETTER_RECORD + 2));
        assert_eq!(recent.last().unwrap().detail, "#3");
        let text = metrics.render(&crate::host::StoreSnapshot::default());
        assert!(
            text.contains(&format!(
                "manman_dead_letters_total{{reason=\"unsigned\"}} {}",
                DEAD_LETTER_RECORD + 3
            )),
            "{text}"
        );
        assert!(text.contains("manman_dead_letters_total{reason=\"not_owner\"} 0"));
    }
}
