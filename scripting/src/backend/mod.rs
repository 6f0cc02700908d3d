//! The backends that carry out a Plan, one per isolation.

pub mod container;
pub mod microvm;
