//! The integration suite in one test binary: each module pins one part of DESIGN.md, and
//! RocksDB, timely and the AWS clients are linked once instead of once per file.
//! `tests/aws_outage.rs` stays apart because it repoints this process's AWS endpoint.

mod common;

mod api;
mod aws_kinesis;
mod aws_s3;
mod bench;
mod cli;
mod cluster;
mod determinism;
mod fixtures;
mod label_contract;
mod outputs;
mod pipeline_files;
mod sources;
mod tables_store;
mod talkingdata;
mod train_serve;
