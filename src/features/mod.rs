//! Features: per-event derived values and per-entity aggregates as of each example's time.

pub mod agg;
pub mod derived;
pub mod distinct;
pub mod fragments;
pub mod keyed;
pub mod records;
pub mod table_op;
pub mod versions;
pub mod waiting;
pub mod window_times;
