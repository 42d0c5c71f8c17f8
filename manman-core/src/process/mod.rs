//! Running game servers as real processes: the [`TokioProcessRunner`] and the graceful
//! [`stop`] sequence.

#[cfg(feature = "process")]
mod os;
#[cfg(feature = "process")]
#[forbid(unsafe_code)]
mod shim_runner;
#[cfg(feature = "process")]
#[forbid(unsafe_code)]
mod tokio_runner;

#[forbid(unsafe_code)]
mod stop;

#[cfg(feature = "process")]
pub use shim_runner::ShimProcessRunner;
pub use stop::{StopStep, Stopped, kill, stop};
#[cfg(feature = "process")]
pub use tokio_runner::{MAX_LINE_BYTES, TokioProcessRunner};

#[cfg(all(test, feature = "process"))]
#[forbid(unsafe_code)]
mod conformance {
    //! [`TokioProcessRunner`] passes the process suite, on `/bin/sh` scripts.

    use super::TokioProcessRunner;
    use crate::ports::{ProcessRunner, ProcessSpec};
    use crate::testing::process::{self, ProcessFixture, Program};

    /// Each program as a `/bin/sh` script.
    struct ShellScripts {
        runner: TokioProcessRunner,
    }

    impl ProcessFixture for ShellScripts {
        fn runner(&self) -> &dyn ProcessRunner {
            &self.runner
        }

        fn spec(&self, program: Program) -> ProcessSpec {
            process::shell_script(program)
        }
    }

    #[tokio::test]
    async fn tokio_runner_passes_the_process_suite() {
        process::run_all(&ShellScripts {
            runner: TokioProcessRunner::new(),
        })
        .await;
    }
}
