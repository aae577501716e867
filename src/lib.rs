//! labeljoin: point-in-time-correct, labeled training rows from ad event streams.
//!
//! The job reads as the data flows: [`sources`] -> [`time`] (watermarks) -> [`features`]
//! (tables as of each example) -> [`label`] (the delayed join) -> [`sinks`]; [`dataflow`]
//! wires them on timely, [`run`] drives a job, [`config`] is the pipeline file.
#![warn(missing_docs)]

pub mod api;
pub mod aws;
pub mod bench;
pub mod chunked;
pub mod config;
pub mod dataflow;
pub mod event;
pub mod features;
pub mod gen;
pub mod hash_slots;
pub mod label;
pub mod metrics;
pub mod parked;
pub mod prefetch;
pub mod radix;
pub mod run;
pub mod sinks;
pub mod sources;
pub mod tables;
pub mod time;
pub mod varint;
