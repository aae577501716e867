//! Sinks: partitioned training CSVs, their commit markers and schema, and side files.

pub mod commit;
pub mod partition;
pub mod schema;
pub mod side;
