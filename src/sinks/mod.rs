//! Sinks: partitioned training CSVs, their commit markers and schema, and side files.

pub mod commit;
pub mod direct;
pub mod numbers;
pub mod partition;
pub mod s3;
pub mod schema;
pub mod side;
