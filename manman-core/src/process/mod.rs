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

pub use stop::{StopStep, Stopped, kill, stop};
#[cfg(feature = "process")]
pub use shim_runner::ShimProcessRunner;
#[cfg(feature = "process")]
pub use tokio_runner::{MAX_LINE_BYTES, TokioProcessRunner};

#[cfg(all(test, feature = "process"))]
#[forbid(unsafe_code)]
mod conformance {
    //! [`TokioProcessRunner`] passes the process suite, on `/bin/sh` scripts.

    use super::TokioProcessRunner;
    use crate::ports::{ProcessRunner, ProcessSpec};
    use crate::testing::process::{self, ProcessFixture, Program};
    use std::collections::BTreeMap;

    /// Each program as a `/bin/sh` script.
    struct ShellScripts {
        runner: TokioProcessRunner,
    }

    impl ProcessFixture for ShellScripts {
        fn runner(&self) -> &dyn ProcessRunner {
            &self.runner
        }

        fn spec(&self, program: Program) -> ProcessSpec {
            let script = match program {
                Program::Echo => {
                    "echo ready; while IFS= read -r line; do printf '%s\\n' \"$line\"; done"
                }
                Program::PrintAndExit => "echo 'out 1'; echo 'err 1' >&2; echo 'out 2'; exit 3",
                Program::WaitForSignal => "echo ready; exec sleep 600",
                // An ignored signal stays ignored across exec.
                Program::IgnoreTerm => "trap '' TERM; echo ready; exec sleep 600",
                Program::QuitOnLine => {
                    "echo ready; while IFS= read -r line; do [ \"$line\" = quit ] && exit 0; done; exit 0"
                }
                Program::Crash => "exit 1",
                Program::Missing => {
                    return spec("/nonexistent/manman-conformance/missing", Vec::new());
                }
            };
            spec("/bin/sh", vec!["-c".to_owned(), script.to_owned()])
        }
    }

    fn spec(program: &str, args: Vec<String>) -> ProcessSpec {
        ProcessSpec {
            program: program.into(),
            args,
            env: BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]),
            cwd: std::env::temp_dir(),
            user: None,
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
