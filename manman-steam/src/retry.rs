//! The retry loop: transient failures run again after a jittered backoff, fatal ones end the
//! install at once.

use crate::error::{ErrorClass, ErrorContext, Failure, SteamError};
use crate::run::stage;
use crate::settings::SteamSettings;
use manman_core::ports::ProgressSink;
use std::future::Future;

/// A failed attempt: why, and the last output lines.
pub(crate) type Attempt<T> = Result<T, (Failure, Vec<String>)>;

/// Calls `attempt(number, class of the previous failure)` until it succeeds, fails with a
/// fatal class, or [`SteamSettings::max_attempts`] were made.
pub(crate) async fn with_retries<T, F, Fut>(
    settings: &SteamSettings,
    context: &ErrorContext,
    progress: &dyn ProgressSink,
    mut attempt: F,
) -> Result<T, SteamError>
where
    F: FnMut(u32, Option<ErrorClass>) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let max_attempts = settings.max_attempts.max(1);
    let mut previous = None;
    let mut number = 0;
    loop {
        number += 1;
        let (failure, tail) = match attempt(number, previous).await {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        if !failure.class.is_transient() || number >= max_attempts {
            return Err(context.error(failure, number, tail));
        }
        let delay = match failure.class {
            // Every early login extends Steam's lockout.
            ErrorClass::RateLimited => settings.backoff.longest(),
            _ => settings.backoff.delay(number),
        };
        tracing::warn!(
            app_id = context.app_id,
            dir = %context.dir.display(),
            attempt = number,
            max_attempts,
            class = %failure.class,
            what = %failure.what,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "SteamCMD failed; retrying"
        );
        progress.report(stage("retrying"));
        previous = Some(failure.class);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use manman_core::ports::NoProgress;
    use std::time::Duration;

    fn settings() -> SteamSettings {
        SteamSettings {
            max_attempts: 3,
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_max_attempts() {
        let mut seen = Vec::new();
        let err = with_retries(
            &settings(),
            &ErrorContext::default(),
            &NoProgress,
            |n, prev| {
                seen.push((n, prev));
                async { Attempt::<()>::Err((Failure::new(ErrorClass::Network, "0x602"), vec![])) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Network);
        assert_eq!(err.attempts(), 3);
        assert_eq!(
            seen,
            [
                (1, None),
                (2, Some(ErrorClass::Network)),
                (3, Some(ErrorClass::Network))
            ]
        );
    }

    #[tokio::test]
    async fn fatal_failures_stop_at_once_and_success_ends_the_loop() {
        let mut calls = 0;
        let err = with_retries(
            &settings(),
            &ErrorContext::default(),
            &NoProgress,
            |_, _| {
                calls += 1;
                async { Attempt::<()>::Err((Failure::new(ErrorClass::DiskFull, "0x202"), vec![])) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(
            (err.class(), err.attempts(), calls),
            (ErrorClass::DiskFull, 1, 1)
        );
        let value = with_retries(
            &settings(),
            &ErrorContext::default(),
            &NoProgress,
            |n, _| async move {
                if n < 2 {
                    Err((Failure::new(ErrorClass::Timeout, "quiet"), vec![]))
                } else {
                    Ok(n)
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(value, 2);
    }
}
