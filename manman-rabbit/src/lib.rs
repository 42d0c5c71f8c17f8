#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod acker;
mod bus;
mod connection;
mod consumer;
mod declarations;
mod error;
mod properties;
mod publisher;
mod redeliveries;
mod settings;
mod topology_record;
mod unsettled;

pub use bus::RabbitBus;
pub use declarations::Binding;
pub use error::ConnectError;
pub use settings::RabbitSettings;
pub use topology_record::DeclaredTopology;
