//! The sandboxed Rhai engine a policy runs in.
//!
//! Rhai itself has no file, process or network access; what a policy may reach beyond the
//! language is what [`super::api`] registers and what the import resolver
//! ([`super::resolver`]) lets through. What is left to bound is the script's appetite: the
//! limits below, each far above what a policy needs, and a wall-clock deadline, so that a
//! loop that never ends is stopped within a second however cheap its operations are.

use std::rc::Rc;
use std::time::Instant;

use rhai::{Dynamic, Engine};

use super::resolver::FolderResolver;
use plan::ImageFiles;

use super::limits::{
    DEADLINE, MAX_ARRAY_ITEMS, MAX_CALL_LEVELS, MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH, MAX_MAP_ENTRIES,
    MAX_MODULES, MAX_OPERATIONS, MAX_STRING_BYTES,
};
use super::script_plan::EngineTag;

/// How often, in operations, the deadline is checked: often enough to stop within a few
/// milliseconds, rarely enough that reading the clock costs nothing measurable.
const DEADLINE_CHECK_EVERY: u64 = 1024;
/// What an evaluation stopped by the deadline reports.
pub(crate) const DEADLINE_MESSAGE: &str =
    "the script ran for more than 1 second and was stopped; look for a loop that never ends";

/// An engine for one evaluation of the script called `main`, importing from `resolver` and
/// reading images' user databases with `image_files`.
pub(crate) fn build(
    main: &str,
    resolver: FolderResolver,
    image_files: Rc<dyn ImageFiles>,
) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_BYTES)
        .set_max_array_size(MAX_ARRAY_ITEMS)
        .set_max_map_size(MAX_MAP_ENTRIES)
        .set_max_modules(MAX_MODULES)
        // `eval` would compile text the script computed, out of reach of these limits'
        // parse-time checks and of the positions errors point at.
        .disable_symbol("eval")
        // A policy's output is its value; `print` and `debug` go to stderr, so `capsule plan`
        // prints only JSON on stdout.
        .on_print(|text| eprintln!("{text}"))
        .on_debug(|text, source, pos| match source {
            Some(source) => eprintln!("{source}:{pos}: {text}"),
            None => eprintln!("{pos}: {text}"),
        })
        .set_module_resolver(resolver)
        .set_default_tag(Dynamic::from(EngineTag {
            main: main.to_owned(),
            image_files,
        }));
    let deadline = Instant::now() + DEADLINE;
    engine.on_progress(move |operations| {
        if operations % DEADLINE_CHECK_EVERY == 0 && Instant::now() > deadline {
            Some(Dynamic::from(DEADLINE_MESSAGE))
        } else {
            None
        }
    });
    super::api::register(&mut engine);
    engine
}
