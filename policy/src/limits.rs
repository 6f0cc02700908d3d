//! What one evaluation of a policy may use: each limit far above what a policy needs, so a
//! script that hits one is a runaway, and `docs/policy.md` states them.

use std::time::Duration;

/// How long one evaluation may run, imports included.
pub const DEADLINE: Duration = Duration::from_secs(1);
/// Operations (roughly, evaluated expressions) one evaluation may run.
pub const MAX_OPERATIONS: u64 = 2_000_000;
/// How deep functions may call each other.
pub const MAX_CALL_LEVELS: usize = 32;
/// How deep expressions may nest, at the top level and inside functions.
pub const MAX_EXPR_DEPTH: usize = 64;
/// How deep expressions may nest inside a function.
pub const MAX_FN_EXPR_DEPTH: usize = 32;
/// Bytes in one string.
pub const MAX_STRING_BYTES: usize = 64 << 10;
/// Items in one array.
pub const MAX_ARRAY_ITEMS: usize = 4096;
/// Entries in one map.
pub const MAX_MAP_ENTRIES: usize = 4096;
/// Bytes of one script or module file.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// The most modules one evaluation may import (distinct files; a repeat is cached).
pub const MAX_MODULES: usize = 32;
