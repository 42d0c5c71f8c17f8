//! In-memory adapters: real implementations with the semantics of the service-backed ones,
//! for `manman up` and fast tests. Not mocks.

mod bus;
mod credentials;
mod process;
mod store;

pub use bus::MemoryBus;
pub use process::{MemoryProcess, MemoryProcessRunner, OnSignal, Script, SentSignal};
pub use store::MemoryStore;

#[cfg(test)]
mod conformance {
    //! The in-memory adapters pass the conformance suites.

    use super::{MemoryBus, MemoryProcessRunner, MemoryStore, Script};
    use crate::ports::{ProcessRunner, ProcessSignal, ProcessSpec};
    use crate::store::Store;
    use crate::testing::process::{self, ProcessFixture, Program, READY};
    use crate::testing::{bus, bus::BusUnderTest, store};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_bus_passes_the_bus_suite() {
        let bus = MemoryBus::new();
        let under_test = BusUnderTest {
            publisher: Arc::new(bus.clone()),
            subscriber: Arc::new(bus),
        };
        bus::run_all(&under_test).await;
    }

    #[tokio::test]
    async fn memory_bus_ends_the_consumers_of_a_deleted_queue() {
        let memory = MemoryBus::new();
        let under_test = BusUnderTest {
            publisher: Arc::new(memory.clone()),
            subscriber: Arc::new(memory.clone()),
        };
        bus::a_deleted_queue_ends_its_consumer_and_can_be_declared_and_bound_again(
            &under_test,
            |queue| {
                let memory = memory.clone();
                async move {
                    assert!(memory.delete_queue(&queue), "queue {queue:?} existed");
                }
            },
        )
        .await;
    }

    /// Each program of the process suite as a script.
    struct Scripts {
        runner: MemoryProcessRunner,
    }

    impl Scripts {
        fn new() -> Self {
            let runner = MemoryProcessRunner::new();
            for program in [
                Program::Echo,
                Program::PrintAndExit,
                Program::WaitForSignal,
                Program::IgnoreTerm,
                Program::QuitOnLine,
                Program::Crash,
                Program::Missing,
            ] {
                let script = match program {
                    Program::Echo => Script::new().stdout(READY).echo_stdin(),
                    Program::PrintAndExit => Script::new()
                        .stdout("out 1")
                        .stderr("err 1")
                        .stdout("out 2")
                        .exit(3),
                    Program::WaitForSignal => Script::new().stdout(READY).hang(),
                    Program::IgnoreTerm => Script::new()
                        .stdout(READY)
                        .hang()
                        .ignore(ProcessSignal::Term),
                    Program::QuitOnLine => Script::new().stdout(READY).read_until("quit").exit(0),
                    Program::Crash => Script::new().exit(1),
                    Program::Missing => Script::fail_to_spawn("no such file"),
                };
                runner.script(Self::program(program), script);
            }
            Self { runner }
        }

        fn program(program: Program) -> String {
            format!("/memory/{program:?}")
        }
    }

    impl ProcessFixture for Scripts {
        fn runner(&self) -> &dyn ProcessRunner {
            &self.runner
        }

        fn spec(&self, program: Program) -> ProcessSpec {
            ProcessSpec {
                program: Self::program(program).into(),
                args: Vec::new(),
                env: BTreeMap::new(),
                cwd: "/".into(),
                user: None,
            }
        }
    }

    #[tokio::test]
    async fn memory_process_runner_passes_the_process_suite() {
        process::run_all(&Scripts::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn memory_process_runner_passes_the_process_suite_in_paused_time() {
        let started = std::time::Instant::now();
        process::run_all(&Scripts::new()).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "no real waiting: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn memory_store_passes_the_store_suite() {
        store::run_all(&Store::from_adapter(MemoryStore::new())).await;
    }
}
