//! The retry loop: transient failures run again after a jittered backoff (as often as their
//! class allows, and while the install's time lasts), fatal ones end the install at once.

use crate::error::{ErrorClass, ErrorContext, Failure, SteamError};
use crate::run::stage;
use crate::settings::SteamSettings;
use manman_core::ports::{InstallProgress, ProgressSink};
use std::future::Future;
use tokio::time::Instant;

/// A failed attempt: why, and the last output lines.
pub(crate) type Attempt<T> = Result<T, (Failure, Vec<String>)>;

/// Calls `attempt(number, class of the previous failure)` until it succeeds, fails with a
/// fatal class, made the attempts its class allows ([`ErrorClass::max_attempts`] of
/// [`SteamSettings::max_attempts`]), or the next one would start after `deadline`.
pub(crate) async fn with_retries<T, F, Fut>(
    settings: &SteamSettings,
    context: &ErrorContext,
    progress: &dyn ProgressSink,
    deadline: Option<Instant>,
    mut attempt: F,
) -> Result<T, SteamError>
where
    F: FnMut(u32, Option<ErrorClass>) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut previous = None;
    let mut number = 0;
    loop {
        number += 1;
        let (mut failure, tail) = match attempt(number, previous).await {
            Ok(value) => return Ok(value),
            Err(failed) => failed,
        };
        let max_attempts = failure.class.max_attempts(settings.max_attempts);
        if number >= max_attempts {
            return Err(context.error(failure, number, tail));
        }
        let delay = settings.backoff.delay(number);
        if deadline.is_some_and(|deadline| Instant::now() + delay >= deadline) {
            failure.what = format!(
                "{}; no time was left for another attempt within the install timeout of {} s",
                failure.what,
                context.install_timeout.as_secs()
            );
            return Err(context.error(failure, number, tail));
        }
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
        progress.report(InstallProgress {
            detail: Some(format!(
                "{}: attempt {number} of {max_attempts} failed ({}); attempt {} in {} s",
                failure.class,
                failure.what,
                number + 1,
                delay.as_secs_f32().ceil()
            )),
            ..stage("retrying")
        });
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
            None,
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
            None,
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
            None,
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
