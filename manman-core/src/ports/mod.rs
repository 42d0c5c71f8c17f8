//! The ports: small object-safe traits, held as `Arc<dyn Port>`, that adapters implement.
//!
//! | port | adapters |
//! |---|---|
//! | [`MessagePublisher`], [`MessageSubscriber`] | [`crate::memory::MemoryBus`], `manman-rabbit` |
//! | [`CatalogueRepository`], [`WorkerRepository`], [`InstanceRepository`], [`StatusRepository`], [`CommandRepository`], [`CredentialRepository`] | [`crate::memory::MemoryStore`], `manman-pg`, `manman-sqlite` |
//! | [`ProcessRunner`] | [`crate::process::TokioProcessRunner`] |
//! | [`GameInstaller`] | [`crate::worker_service::LocalInstaller`], `manman-steam` |
//! | [`HostApi`] | [`crate::host::LocalHostApi`], `manman-http`'s client |
//! | [`Clock`] | [`SystemClock`] |
//!
//! With the `mocks` feature (and in this crate's own unit tests) each port also has a
//! [mockall](https://docs.rs/mockall) mock beside it — `MockHostApi`, `MockStatusRepository`,
//! `MockClock`, `MockConsumer`, … (every port but [`GameInstaller`] and [`CommandRepository`], whose docs say why) — for a test that must check an interaction or inject a
//! failure no in-memory adapter produces. Where an in-memory adapter produces the situation,
//! prefer it: a mock states what a test expects, not what the port does.

pub mod bus;
pub mod clock;
pub mod host_api;
pub mod installer;
pub mod process;
pub mod store;

pub use bus::{
    Acker, BusError, Consumer, Delivery, ExchangeKind, Message, MessagePublisher,
    MessageSubscriber, QueueSpec,
};
pub use clock::{Clock, SystemClock};
pub use host_api::{ConfigBundle, HostApi, HostApiError};
pub use installer::{
    GameInstaller, InstallError, InstallProgress, InstallRequest, Installation, NoProgress,
    ProgressSink,
};
pub use process::{
    ExitStatus, HeldServer, OutputLine, OutputStream, ProcessControl, ProcessError, ProcessHandle,
    ProcessRunner, ProcessSignal, ProcessSpec, ProcessUser, Reattached, ServerLaunch,
    SpawnedProcess,
};
pub use store::{
    ApplyOutcome, CatalogueRepository, CommandRepository, ConsoleTailRepository,
    CredentialRepository, CurrentStatus, EntityUpdate, InstanceRepository, StatusChange,
    StatusRepository, StoreError, WorkerRepository,
};

#[cfg(any(test, feature = "mocks"))]
pub use bus::{MockAcker, MockConsumer, MockMessagePublisher, MockMessageSubscriber};
#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use host_api::MockHostApi;
#[cfg(any(test, feature = "mocks"))]
pub use process::MockProcessRunner;
#[cfg(any(test, feature = "mocks"))]
pub use store::{
    MockCatalogueRepository, MockConsoleTailRepository, MockCredentialRepository,
    MockInstanceRepository, MockStatusRepository, MockWorkerRepository,
};
