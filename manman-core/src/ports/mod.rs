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
    ExitStatus, OutputLine, OutputStream, ProcessControl, ProcessError, ProcessHandle,
    ProcessRunner, ProcessSignal, ProcessSpec, ProcessUser, SpawnedProcess,
};
pub use store::{
    ApplyOutcome, CatalogueRepository, CommandRepository, ConsoleTailRepository,
    CredentialRepository, CurrentStatus, EntityUpdate, InstanceRepository, StatusChange,
    StatusRepository, StoreError, WorkerRepository,
};
